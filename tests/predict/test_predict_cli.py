"""``simplefold predict`` end to end with conftest's tiny random model saved as converted weights.

Checks the output layout, PDB/mmCIF files re-read by biotite and gemmi (sequence, OXT, B-factors =
pLDDT), manifests with a bad record, resume after deleting a summary and after SIGKILL, sharding
with --merge-manifests, and --dry-run. Steps are kept at 20.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from simplefold.cli import main

SEQS = {
    "alpha": "MKTAYIAKQRQISFVKSHFSRQ",  # 22 aa, bucket 32
    "beta": "GSHMLEDPVNNEWQY",  # 15 aa, bucket 32
}
# 20 steps: fewer blow the coordinates beyond what PDB columns hold (first Euler step has w ~ 99)
STEPS = "20"


def _fasta(path: Path, records: dict[str, str], extra: str = "") -> Path:
    path.write_text("".join(f">{k} test record\n{v}\n" for k, v in records.items()) + extra)
    return path


def _manifest(out: Path, name: str = "manifest.jsonl") -> dict[str, dict]:
    lines = [json.loads(x) for x in (out / name).read_text().splitlines() if x.strip()]
    return {e["target"]: e for e in lines}  # last line per target wins


def _mtimes(d: Path) -> dict[str, int]:
    return {str(p.relative_to(d)): p.stat().st_mtime_ns for p in sorted(d.rglob("*")) if p.is_file()}


def _check_pdb_and_cif(path: Path, sequence: str, plddt: list[float]) -> None:
    """Re-read with biotite and gemmi: sequence, OXT on the last residue, B-factor = pLDDT per residue."""
    import biotite.structure as struc
    import gemmi
    from biotite.structure.io import pdb as bpdb
    from biotite.structure.io import pdbx

    from simplefold.residues import THREE_TO_ONE

    if path.suffix == ".pdb":
        atoms = bpdb.PDBFile.read(str(path)).get_structure(model=1, extra_fields=["b_factor"])
    else:
        atoms = pdbx.get_structure(pdbx.CIFFile.read(str(path)), model=1, extra_fields=["b_factor"])
    res_ids, res_names = struc.get_residues(atoms)
    assert "".join(THREE_TO_ONE[r] for r in res_names) == sequence
    last = atoms[atoms.res_id == res_ids[-1]]
    assert "OXT" in set(last.atom_name)
    expected = np.asarray(plddt)[atoms.res_id - 1]
    np.testing.assert_allclose(atoms.b_factor, expected, atol=0.011)

    st = gemmi.read_structure(str(path))
    chain = st[0][0]
    assert gemmi.one_letter_code([r.name for r in chain]) == sequence
    assert any(a.name == "OXT" for a in chain[len(chain) - 1])
    for i, res in enumerate(chain):
        for a in res:
            assert abs(a.b_iso - plddt[i]) < 0.011


def _check_confidences(d: Path, name: str, sequence: str, summary: dict) -> None:
    """AF3-style confidences.json and ranking CSV agree with summary.json and with the B-factors
    gemmi reads from each sample file, atom by atom."""
    import csv

    import gemmi

    conf = json.loads((d / f"{name}_confidences.json").read_text())
    assert conf["target"] == name and conf["sequence"] == sequence and conf["num_samples"] == 2
    assert conf["token_res_ids"] == list(range(1, len(sequence) + 1)) and set(conf["token_chain_ids"]) == {"A"}
    assert conf["ranking"] == summary["ranking"]
    by_index = {s["index"]: s for s in summary["samples"]}
    for c in conf["samples"]:
        s = by_index[c["index"]]
        assert c["file"] == s["file"] and c["rank"] == s["rank"]
        assert c["residue_plddts"] == pytest.approx(s["plddt"], abs=0.006)
        assert c["mean_plddt"] == pytest.approx(s["mean_plddt"], abs=0.006) == c["ranking_score"]
        model = gemmi.read_structure(str(d / c["file"]))[0]
        atoms = [(ch.name, r.seqid.num, a.name, a.b_iso) for ch in model for r in ch for a in r if a.name != "OXT"]
        assert [a[:3] for a in atoms] == list(zip(conf["atom_chain_ids"], conf["atom_res_ids"], conf["atom_names"]))
        np.testing.assert_allclose([a[3] for a in atoms], c["atom_plddts"], atol=0.011)
    rows = list(csv.DictReader((d / f"{name}_ranking_scores.csv").open()))
    assert [int(r["sample"]) for r in rows] == conf["ranking"]  # best first
    assert [int(r["rank"]) for r in rows] == [1, 2] and {r["seed"] for r in rows} == {str(summary["seed"])}
    scores = [float(r["ranking_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)


def test_predict_end_to_end_pdb_cif_bad_record_and_resume(tiny_model_dir, tmp_path, capsys):
    fasta = _fasta(tmp_path / "in.fasta", SEQS, extra=">broken\nMKT1AY\n")
    out = tmp_path / "out"
    args = ["predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "--steps", STEPS,
            "--num-samples", "2", "--seed", "5", "--no-progress"]
    assert main(args) == 1  # the bad record makes the run fail, after the others are done

    man = _manifest(out)
    assert man["alpha"]["status"] == "ok" and man["beta"]["status"] == "ok"
    assert man["broken"]["status"] == "failed" and "digit" in man["broken"]["reason"]
    assert f"{fasta}:6" in man["broken"]["reason"]  # the bad line, after 2 records of 2 lines
    assert not (out / "broken").exists()

    for name, seq in SEQS.items():
        d = out / name
        assert sorted(p.name for p in d.iterdir()) == sorted(
            [f"{name}_sample_0.pdb", f"{name}_sample_1.pdb", f"{name}_ensemble.pdb", f"{name}_plddt.png",
             f"{name}_confidences.json", f"{name}_ranking_scores.csv", "summary.json"]
        )
        summary = json.loads((d / "summary.json").read_text())
        assert summary["sequence"] == seq and summary["seed"] == 5 and summary["num_samples"] == 2
        assert summary["sampler"]["num_steps"] == int(STEPS) and summary["sampler"]["tau"] == pytest.approx(0.1)
        assert summary["model"]["config"]["name"] == "tiny" and summary["model"]["config"]["condition"] == "embedding"
        assert summary["plddt"] is True and "plddt" in summary["model"]["plddt"]
        assert sorted(s["rank"] for s in summary["samples"]) == [1, 2]
        assert {"sampling", "plddt", "total", "write"} <= set(summary["timings"])
        for s in summary["samples"]:
            assert s["mean_plddt"] == pytest.approx(np.mean(s["plddt"]), abs=0.01)
            _check_pdb_and_cif(d / s["file"], seq, s["plddt"])
        assert (d / f"{name}_plddt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        _check_confidences(d, name, seq, summary)
        # ensemble: 2 models
        import gemmi

        assert len(gemmi.read_structure(str(d / f"{name}_ensemble.pdb"))) == 2

    # resume: delete one summary -> only that target is folded again; the other is untouched
    before = _mtimes(out / "alpha")
    beta_sample = (out / "beta" / "beta_sample_0.pdb").read_bytes()
    (out / "beta" / "summary.json").unlink()
    assert main(args) == 1
    assert _mtimes(out / "alpha") == before
    assert (out / "beta" / "summary.json").is_file()
    assert (out / "beta" / "beta_sample_0.pdb").read_bytes() == beta_sample  # same seed, same structure
    man = _manifest(out)
    assert man["alpha"]["status"] == "skipped" and man["beta"]["status"] == "ok"

    seed5_summary = json.loads((out / "beta" / "summary.json").read_text())
    # changed settings are not "complete": another seed refolds
    assert main([*args[:-2], "7", "--no-progress"]) == 1
    assert _mtimes(out / "alpha") != before

    # mmCIF output of the same run
    out_cif = tmp_path / "out_cif"
    good = _fasta(tmp_path / "good.fasta", {"beta": SEQS["beta"]})
    rc = main(["predict", str(good), "-o", str(out_cif), "--model", str(tiny_model_dir), "--steps", STEPS,
               "--num-samples", "2", "--seed", "5", "--format", "cif", "--no-progress"])
    assert rc == 0
    summary = json.loads((out_cif / "beta" / "summary.json").read_text())
    for s in summary["samples"]:
        assert s["file"].endswith(".cif")
        _check_pdb_and_cif(out_cif / "beta" / s["file"], SEQS["beta"], s["plddt"])
    # same seed and target name -> same pLDDT in both formats
    assert summary["samples"][0]["plddt"] == seed5_summary["samples"][0]["plddt"]


def test_predict_resumes_after_sigkill(tiny_model_dir, tmp_path):
    recs = {f"t{i}": SEQS["alpha"][: 12 + i] for i in range(4)}  # bucket 32 ...
    recs["long"] = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVG"  # ... and a 41-residue target (bucket 48)
    fasta = _fasta(tmp_path / "in.fasta", recs)
    out = tmp_path / "out"
    # an explicit seed: the resumed run must fold the remaining targets exactly as the killed one would have
    cmd = [sys.executable, "-m", "simplefold", "predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir),
           "--steps", STEPS, "--seed", "5", "--no-plddt", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "t0" / "summary.json").exists():
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert (out / "t0" / "summary.json").exists(), proc.stderr.read().decode()[-2000:]
    done = [n for n in recs if (out / n / "summary.json").exists()]
    # killed within ~20 ms of the first summary: later targets (the 'long' one needs another
    # compilation for its bucket) are still pending
    assert killed and "long" not in done and len(done) < len(recs)
    before = {n: _mtimes(out / n) for n in done}
    for n in recs:  # no half-written file left behind by the kill
        for p in (out / n).glob(".*.tmp") if (out / n).exists() else ():
            pytest.fail(f"temporary file left: {p}")

    assert main(cmd[3:]) == 0
    for n in done:
        assert _mtimes(out / n) == before[n], f"{n} was folded again"
    for n in recs:
        assert (out / n / "summary.json").is_file()
        assert json.loads((out / n / "summary.json").read_text())["plddt"] is False
    man = _manifest(out)
    assert all(man[n]["status"] == ("skipped" if n in done else "ok") for n in recs)


def test_predict_shards_and_merge(tiny_model_dir, tmp_path, capsys):
    fasta = _fasta(tmp_path / "in.fasta", {**SEQS, "gamma": "MKTAYIAKQRQIS"}, extra=">empty\n")
    out = tmp_path / "out"
    base = ["predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "--steps", STEPS, "--no-plddt",
            "--no-progress"]
    rc1 = main([*base, "--shard", "1/2"])
    s1 = _manifest(out, "manifest.shard-1-of-2.jsonl")
    assert not (out / "manifest.jsonl").exists()
    # merge before shard 2 ran: the other targets are missing
    capsys.readouterr()
    assert main(["predict", str(fasta), "-o", str(out), "--merge-manifests"]) == 1
    assert "MISSING" in capsys.readouterr().out
    rc2 = main([*base, "--shard", "2/2"])
    s2 = _manifest(out, "manifest.shard-2-of-2.jsonl")
    assert set(s1).isdisjoint(s2) and set(s1) | set(s2) == {"alpha", "beta", "gamma", "empty"}
    assert len(s1) == len(s2) == 2
    assert (rc1, rc2).count(1) == 1  # the shard holding 'empty' fails
    assert main(["predict", "--merge-manifests", str(out)]) == 1
    report = capsys.readouterr().out
    assert "3 ok, 1 failed" in report and "empty" in report
    merged = _manifest(out)
    assert merged["empty"]["status"] == "failed" and "empty" in merged["empty"]["reason"]


def test_predict_dry_run_and_usage_errors(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from simplefold.weights import checkpoints

    def boom(*a, **k):
        raise AssertionError("dry run loaded weights")

    monkeypatch.setattr(checkpoints, "load_converted", boom)
    fasta = _fasta(tmp_path / "in.fasta", SEQS, extra=">empty\n")
    # the empty record would fail: exit 1, as the real run
    assert main(["predict", str(fasta), "--model", str(tiny_model_dir), "--dry-run", "--num-samples", "8",
                 "--max-memory-gb", "4"]) == 1
    table = capsys.readouterr().out
    assert "alpha" in table and "beta" in table and "32/256" in table and "FAILS" in table
    assert "1 would fail" in table
    good = _fasta(tmp_path / "good.fasta", SEQS)
    assert main(["predict", str(good), "--model", str(tiny_model_dir), "--dry-run", "--max-memory-gb", "4"]) == 0
    assert "0 would fail" in capsys.readouterr().out
    assert main(["predict", str(fasta), "--model", str(tiny_model_dir), "--dry-run", "--max-memory-gb", "1e-6"]) == 1
    assert "all would fail: nothing would run" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    # a bare sequence works as INPUT; released names need no weights for a dry run
    assert main(["predict", "MKTAYIAKQR", "--model", "simplefold_100M", "--dry-run", "--max-memory-gb", "64"]) == 0
    assert "sequence" in capsys.readouterr().out
    assert main(["predict", str(fasta), "--model", "no_such_model", "--dry-run"]) == 2
    assert main(["predict", str(fasta)]) == 2  # no -o
    assert main(["predict", str(fasta), "-o", str(tmp_path / "o"), "--shard", "3/2"]) == 2
    assert main(["predict", str(tmp_path / "missing.fasta"), "-o", str(tmp_path / "o")]) == 2


def test_predict_config_file_below_the_command_line(tmp_path, capsys):
    import shutil

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"_doc": "x", "num_samples": 7, "tau": 0.6, "model": "simplefold_100M"}))
    fasta = _fasta(tmp_path / "in.fasta", SEQS)
    assert main(["predict", str(fasta), "--dry-run", "--config", str(cfg), "--num-samples", "3", "--max-memory-gb", "64"]) == 0
    table = capsys.readouterr().out
    rows = [ln.split() for ln in table.splitlines() if ln.startswith("alpha")]
    assert rows and rows[0][4] == "3"  # the command line wins over the file
    shutil.copy(REPO / "inference" / "ensemble.json", tmp_path / "e.json")
    # a fixed budget: the planner's default is the memory available now, which other work changes
    assert main(["predict", str(fasta), "--dry-run", "--config", str(tmp_path / "e.json"), "--max-memory-gb", "64"]) == 0
    rows = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("alpha")]
    assert rows[0][4] == "50"
    cfg.write_text(json.dumps({"num_sampels": 7}))
    assert main(["predict", str(fasta), "--dry-run", "--config", str(cfg)]) == 2


def test_predict_option_precedence_command_line_then_file_then_defaults(tmp_path):
    """An option given on the command line wins even when it equals its default (``--seed 42``);
    the file fills what the command line left out; the defaults fill the rest."""
    from simplefold.cli import build_parser
    from simplefold.cli.predict import option_defaults, resolve_options

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"seed": 7, "num_samples": 5, "format": "cif", "output": "from_file"}))
    defaults = option_defaults()
    args = build_parser().parse_args(["predict", "MKTAYIAKQR", "--seed", str(defaults["seed"]), "--num-samples",
                                      str(defaults["num_samples"]), "--config", str(cfg)])
    resolve_options(args)
    assert args.seed == defaults["seed"] and args.num_samples == defaults["num_samples"]  # command line
    assert args.format == "cif" and args.output == Path("from_file")  # file
    assert args.model == defaults["model"] and args.plddt is True and args.dry_run is False  # defaults
    args = build_parser().parse_args(["predict", "MKTAYIAKQR", "--config", str(cfg), "--no-plddt"])
    resolve_options(args)
    assert args.seed == 7 and args.num_samples == 5 and args.plddt is False


def test_predict_bfloat16_precision_is_recorded_and_refolds(tiny_model_dir, tmp_path):
    """--precision bfloat16 runs the mixed mode, says so in summary.json, and an output made in
    float32 does not count as done for a bfloat16 run (nor the other way round)."""
    fasta = _fasta(tmp_path / "one.fasta", {"alpha": SEQS["alpha"]})
    out = tmp_path / "out"
    args = ["predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "--steps", STEPS, "--no-progress"]
    assert main(args + ["--precision", "bfloat16"]) == 0
    summary = json.loads((out / "alpha" / "summary.json").read_text())
    assert summary["precision"] == "bfloat16" and summary["model"]["config"]["dtype"] == "bfloat16"
    assert _manifest(out)["alpha"]["status"] == "ok"
    assert main(args) == 0  # float32: not a resume of the bf16 output
    assert _manifest(out)["alpha"]["status"] == "ok"
    assert json.loads((out / "alpha" / "summary.json").read_text())["precision"] == "float32"
    assert main(args) == 0
    assert _manifest(out)["alpha"]["status"] == "skipped"
    with pytest.raises(SystemExit):
        main(args + ["--precision", "float16"])


def test_rerun_with_fewer_samples_replaces_the_target_as_a_whole(tiny_model_dir, tmp_path):
    """A target's files are replaced together: 3 samples then 1 leaves only the new sample (no stale
    _sample_1/_sample_2/_ensemble beside it), and no temporary directory is left behind."""
    fasta = _fasta(tmp_path / "one.fasta", {"alpha": SEQS["alpha"]})
    out = tmp_path / "out"
    args = ["predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "--steps", STEPS,
            "--no-progress", "--no-plddt"]
    assert main(args + ["--num-samples", "3"]) == 0
    assert {p.name for p in (out / "alpha").iterdir()} >= {"alpha_sample_2.pdb", "alpha_ensemble.pdb"}
    assert main(args + ["--num-samples", "1"]) == 0
    assert sorted(p.name for p in (out / "alpha").iterdir()) == ["alpha_sample_0.pdb", "summary.json"]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".simplefold")) == ["alpha", "manifest.jsonl"]


def test_unwritable_output_fails_before_any_work_with_one_line(tiny_model_dir, tmp_path, caplog, monkeypatch):
    """An output path that cannot take files (here below a regular file: as root, chmod would not
    stop writes) is refused with one line naming it, exit 2, before the model is loaded."""
    from simplefold.predict import loading

    def boom(*a, **k):
        raise AssertionError("model loaded before the output was checked")

    monkeypatch.setattr(loading, "load_model", boom)
    fasta = _fasta(tmp_path / "one.fasta", {"alpha": SEQS["alpha"]})
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["predict", str(fasta), "-o", str(blocker / "out"), "--model", str(tiny_model_dir), "--no-progress"]) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None
    msg = errors[0].getMessage()
    assert "\n" not in msg and str(blocker / "out") in msg and "cannot write" in msg


def test_unknown_letters_are_recorded_in_summary_and_log(tiny_model_dir, tmp_path, caplog):
    fasta = _fasta(tmp_path / "one.fasta", {"odd": "MKTXAYUIAKQB"})
    out = tmp_path / "out"
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "--steps", STEPS,
                 "--no-progress", "--no-plddt"]) == 0
    assert json.loads((out / "odd" / "summary.json").read_text())["unknown_residues"] == ["X4", "U7", "B12"]
    assert any("3 residues read as UNK: X4 U7 B12" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------- structure check, unstable grid


def _diverging(kind: str):
    """A 'network' whose samples diverge: v = 50·y (grows ~e^50: finite, beyond PDB columns) or 1e4·y (overflows)."""
    import jax.numpy as jnp

    from simplefold.predict.loading import LoadedModel

    def net(y, t, feats):
        v = y * (50.0 if kind == "huge" else 1e4)
        return {"predict_velocity": v}

    return LoadedModel(network=net, name=f"diverging_{kind}")


@pytest.mark.parametrize(("kind", "message"), [("huge", "diverged"), ("overflow", "non-finite")])
def test_predict_reports_a_failed_structure_check_per_target(tmp_path, kind, message, caplog):
    """A diverged prediction is a per-target failure in the manifest and the log, never a writer exception,
    and no file of that target is written."""
    from simplefold.predict import run as predict_run
    from simplefold.predict.options import FoldOptions
    from simplefold.predict.targets import Target

    out = tmp_path / "out"
    report = predict_run.predict_to_directory(
        [Target("pep", SEQS["beta"])], out, _diverging(kind), FoldOptions(num_steps=230, plddt=False, seed=0)
    )
    assert report.failed == ["pep"]
    entry = _manifest(out)["pep"]
    assert entry["status"] == "failed" and "structure check" in entry["reason"] and message in entry["reason"]
    assert "sample 0" in entry["reason"]
    assert not (out / "pep").exists()
    assert any("structure check" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)


def test_predict_warns_about_an_unstable_step_count(tiny_model_dir, tmp_path, caplog):
    """--steps below 230 (official log grid): a clear warning in the log, the manifest and summary.json."""
    out = tmp_path / "out"
    fasta = _fasta(tmp_path / "in.fasta", {"alpha": SEQS["alpha"]})
    assert main(["predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "--steps", STEPS,
                 "--no-plddt", "--no-progress"]) == 0
    entry = _manifest(out)["alpha"]
    assert entry["status"] == "ok"
    assert "20 sampler steps are numerically unstable" in entry["warnings"][0]
    assert "stable from 230 steps" in entry["warnings"][0]
    summary = json.loads((out / "alpha" / "summary.json").read_text())
    assert summary["sampler_warning"] == entry["warnings"][0]
    assert any("numerically unstable" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A tmpfs mounted at ``path`` (a real file system: it fills up, or is read-only); the test is
    skipped where mounting is not allowed."""
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MiB tmpfs."""
    with _tmpfs(tmp_path / "tmpfs", "size=4m") as mnt:
        yield mnt


def _fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    block = b"\0" * 65536
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as exc:
            assert exc.errno == 28  # ENOSPC
    # the last bytes: fill whatever a smaller write still fits
    with open(path, "ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass


def test_full_disk_stops_with_one_line_keeps_finished_targets_and_resumes(tiny_model_dir, tmp_path, small_tmpfs,
                                                                          caplog, monkeypatch):
    """The disk fills up while the second target is written: the run stops there with one
    error line (no traceback, no per-target failures), nothing half-written is left, the first
    target stays complete; once space is freed the same command folds the rest and skips the first."""
    from simplefold.predict import run as predict_run

    records = {"a1": SEQS["alpha"], "b2": SEQS["beta"], "c3": "MKVLAAGIVALLLAA"}
    fasta = _fasta(tmp_path / "in.fasta", records)
    out = small_tmpfs / "out"
    ballast = small_tmpfs / "ballast"
    real_write = predict_run.write_result
    written = []

    def write_then_fill(result, *a, **k):
        if written:  # the disk fills up while the second target is being written
            _fill(ballast)
        paths = real_write(result, *a, **k)
        written.append(result.name)
        return paths

    monkeypatch.setattr(predict_run, "write_result", write_then_fill)
    args = ["predict", str(fasta), "-o", str(out), "--model", str(tiny_model_dir), "--steps", STEPS,
            "--num-samples", "2", "--no-progress"]
    caplog.clear()
    assert main(args) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].exc_info is None, [r.getMessage() for r in errors]
    msg = errors[0].getMessage()
    assert "\n" not in msg and "no space left" in msg and "run the same command again" in msg
    assert not any(r.exc_info for r in caplog.records)  # no traceback anywhere in the log
    first = written[0]
    assert (out / first / "summary.json").is_file()
    others = [n for n in records if n != first]
    leftovers = [p.name for p in out.iterdir() if p.name not in ("manifest.jsonl", ".simplefold", first)]
    assert leftovers == [], leftovers  # no half-written target directory, no temporary directory
    assert len(written) == 1
    assert sum(str(out / n) in msg for n in others) == 1  # names the target it stopped at
    man = _manifest(out)  # the first is recorded; none is recorded as failed because of the disk
    assert man[first]["status"] == "ok" and not any(n in man for n in others)

    ballast.unlink()
    monkeypatch.setattr(predict_run, "write_result", real_write)
    before = _mtimes(out / first)
    assert main(args) == 0
    assert _mtimes(out / first) == before
    man = _manifest(out)
    assert man[first]["status"] == "skipped" and all(man[n]["status"] == "ok" for n in others)


def test_read_only_file_system_is_refused_before_any_work(tiny_model_dir, tmp_path, caplog, monkeypatch):
    """A read-only mount (EROFS stops root too): one error line naming the directory, exit 2, no model loaded."""
    from simplefold.predict import loading

    with _tmpfs(tmp_path / "ro", "ro,size=1m") as mnt:
        monkeypatch.setattr(loading, "load_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded")))
        fasta = _fasta(tmp_path / "one.fasta", {"alpha": SEQS["alpha"]})
        caplog.clear()
        assert main(["predict", str(fasta), "-o", str(mnt), "--model", str(tiny_model_dir), "--no-progress"]) == 2
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and errors[0].exc_info is None
        assert str(mnt) in errors[0].getMessage() and "\n" not in errors[0].getMessage()
        assert list(mnt.iterdir()) == []
