"""Dataset acquisition never traps the user: what a failed ingest records, the config snippets the messages print,
what reruns the data rules, temporary folders of killed jobs, and errors that name the file at fault and its archive.
On the small fake archives of tests/fakedata.py."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import pytest
import yaml
from fakedata import make_cityscapes, make_gta5, make_synthia, serve

from conftest import REPO, job_counts, run_snakemake
from diga import cli
from diga import config as config_module
from diga.atomic import HOST, atomic_dir
from diga.data.archives import ArchiveError, DownloadError, download, sha256_file
from diga.data.ingest import AcquisitionError, acquire
from diga.data.prepare import prepare

PAPER_CONFIG = REPO / "config" / "gta5_to_cityscapes.yaml"
TINY_GTA5 = REPO / "tests" / "configs" / "tiny_gta5.yaml"


def spec(**overrides) -> dict:
    base = {"way": "archives", "folder": None, "archive_dir": None, "archive_names": None, "url": None,
            "sha256": {}, "retries": 3}
    return {**base, **overrides}


def snippets(message: str) -> list[str]:
    """The YAML blocks a message prints after '(--configfile <your config> <this file>):', as printed."""
    blocks = []
    for part in message.split("<this file>):\n")[1:]:
        lines = []
        for line in part.splitlines():
            if not (line.startswith("datasets:") or line.startswith(" ")):
                break
            lines.append(line)
        blocks.append("\n".join(lines) + "\n")
    return blocks


def pasted(snippet: str, tmp_path) -> dict:
    """The paper config with the snippet saved as a file of its own and added after it, validated."""
    path = tmp_path / "pasted.yaml"
    path.write_text(snippet)
    return config_module.load(str(PAPER_CONFIG), str(path))


# ------------------------------------------------------------------------------------------ case 1: what is recorded


def test_a_truncated_archive_records_nothing_so_its_good_copy_is_accepted(tmp_path):
    good = make_cityscapes(tmp_path / "good")
    shutil.copytree(tmp_path / "good", tmp_path / "archives")
    truncated = tmp_path / "archives" / "leftImg8bit_trainvaltest.zip"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    root, record = tmp_path / "resources", tmp_path / "resources" / "raw" / "cityscapes.sha256.json"
    with pytest.raises(ArchiveError) as error:
        acquire("cityscapes", spec(archive_dir=str(tmp_path / "archives")), root, root / "raw" / "c.json",
                progress=False)
    assert f"{truncated}: not a readable zip" in str(error.value)
    assert f"Delete {truncated} and download it again" in str(error.value)
    assert "No checksum was recorded" in str(error.value)
    assert not record.exists()
    shutil.copy(good[1], truncated)
    receipt = acquire("cityscapes", spec(archive_dir=str(tmp_path / "archives")), root, root / "raw" / "c.json",
                      progress=False)
    expected = {a.name: sha256_file(a) for a in good}
    assert json.loads(record.read_text()) == expected
    assert {n: a["sha256"] for n, a in receipt["archives"].items()} == expected


def test_a_truncated_download_records_nothing_and_deleting_it_is_enough(tmp_path):
    served = tmp_path / "server"
    good = make_gta5(tmp_path / "good", [1, 2])
    make_gta5(served, [1, 2])
    labels = served / "01_labels.zip"
    labels.write_bytes(labels.read_bytes()[:-200])  # the end (the zip's directory) is missing
    settings = dict(way="download", archive_names=["01_images.zip", "01_labels.zip"],
                    archive_dir=str(tmp_path / "downloads"))
    root = tmp_path / "r"
    with serve(served) as (url, _):
        with pytest.raises(ArchiveError, match="deleting it is enough: the rerun downloads it"):
            acquire("gta5", spec(url=url, **settings), root, root / "raw" / "gta5.json", progress=False)
        assert not (root / "raw" / "gta5.sha256.json").exists()
        shutil.copy(good[1], labels)
        (tmp_path / "downloads" / "01_labels.zip").unlink()
        acquire("gta5", spec(url=url, **settings), root, root / "raw" / "gta5.json", progress=False)
    assert json.loads((root / "raw" / "gta5.sha256.json").read_text())["01_labels.zip"] == sha256_file(good[1])


# ------------------------------------------------------------------------------------------ case 2: printed YAML


def test_the_printed_pin_snippet_validates_pasted_as_a_file_or_into_the_config(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="diga")
    archives = make_gta5(tmp_path / "archives", [1, 2])
    acquire("gta5", spec(archive_dir=str(tmp_path / "archives"), archive_names=[a.name for a in archives]),
            tmp_path / "r", tmp_path / "r" / "raw" / "gta5.json", progress=False)
    [snippet] = snippets("\n".join(caplog.messages))
    shas = {a.name: sha256_file(a) for a in archives}
    as_file = pasted(snippet, tmp_path)
    assert as_file["datasets"]["gta5"]["sha256"] == shas and as_file["datasets"]["source"] == "gta5"
    # Merged into the config: the lines below `gta5:` replace its `sha256: {}`, indented as printed.
    text = PAPER_CONFIG.read_text()
    gta5_block = text.index("\n  gta5:\n")
    old = text.index("    sha256: {}", gta5_block)
    under_gta5 = snippet.split("  gta5:\n", 1)[1]
    merged = text[:old] + under_gta5 + text[text.index("\n", old) + 1:]
    settings = config_module.validate(yaml.safe_load(merged), "merged")
    assert settings["datasets"]["gta5"]["sha256"] == shas and settings["datasets"]["gta5"]["way"] == "download"


def test_advice_snippets_in_error_messages_validate(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="diga")
    messages = []
    # Cityscapes asked to download: it needs a login; the snippet sets the archives way.
    with pytest.raises(AcquisitionError) as error:
        acquire("cityscapes", spec(way="download", archive_dir=str(tmp_path / "none")), tmp_path / "r",
                tmp_path / "r" / "x.json")
    assert "csDownload" in str(error.value)
    messages.append(str(error.value))
    # Missing archives of a public dataset: download, or an extracted folder; no archive_dir set: where they are.
    with pytest.raises(AcquisitionError) as error:
        acquire("gta5", spec(), tmp_path / "r", tmp_path / "r" / "x.json")
    messages.append(str(error.value))
    assert len(snippets(messages[-1])) == 3
    # A .rar without bsdtar/unar: the extracted folder (way: folder), said before any archive is read.
    archive = make_synthia(tmp_path / "syn", 1)
    rar = archive.with_suffix(".rar")
    archive.rename(rar)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ArchiveError) as error:
        acquire("synthia", spec(archive_dir=str(rar.parent)), tmp_path / "r", tmp_path / "r" / "s.json")
    messages.append(str(error.value))
    assert "libarchive-tools" in messages[-1] and "way: folder" in messages[-1]
    assert "[synthia] sha256" not in caplog.text  # said before reading the archive
    for message in messages:
        assert snippets(message), message
        for snippet in snippets(message):
            pasted(snippet, tmp_path)  # raises ConfigError if it does not validate
    folder = pasted(snippets(messages[-1])[0], tmp_path)["datasets"]["synthia"]
    assert folder["way"] == "folder" and folder["folder"] == str(tmp_path / "syn" / "SYNTHIA_RAND_CITYSCAPES")


# ------------------------------------------------------------------------------------------ case 8: near misses


def test_a_near_miss_archive_name_is_found_and_its_snippet_works(tmp_path):
    make_cityscapes(tmp_path / "archives")
    odd = tmp_path / "archives" / "leftImg8bit_trainvaltest (1).zip"
    (tmp_path / "archives" / "leftImg8bit_trainvaltest.zip").rename(odd)
    root = tmp_path / "r"
    with pytest.raises(AcquisitionError) as error:
        acquire("cityscapes", spec(archive_dir=str(tmp_path / "archives")), root, root / "raw" / "c.json")
    message = str(error.value)
    assert "missing from" in message and "'leftImg8bit_trainvaltest (1).zip'" in message
    assert f"mv '{odd}' {tmp_path / 'archives' / 'leftImg8bit_trainvaltest.zip'}" in message
    assert "way: download" not in message  # Cityscapes cannot be downloaded without a login
    [snippet] = snippets(message)
    settings = pasted(snippet, tmp_path)["datasets"]["cityscapes"]
    assert settings["archive_names"] == ["gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest (1).zip"]
    receipt = acquire("cityscapes", {**settings, "archive_dir": str(tmp_path / "archives")}, root,
                      root / "raw" / "c.json", progress=False)
    assert set(receipt["archives"]) == {"gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest (1).zip"}


def test_archives_without_one_marker_folder_name_the_missing_one(tmp_path):
    make_cityscapes(tmp_path / "archives")
    other = tmp_path / "archives" / "leftImg8bit_trainvaltest.zip"
    with zipfile.ZipFile(other, "w") as handle:
        handle.writestr("leftImg8bit_sequence/README", "another Cityscapes package\n")
    with pytest.raises(AcquisitionError) as error:
        acquire("cityscapes", spec(archive_dir=str(tmp_path / "archives")), tmp_path / "r",
                tmp_path / "r" / "raw" / "c.json")
    assert f"hold no `leftImg8bit` folder (found gtFine in {tmp_path / 'r' / 'raw' / 'cityscapes'})" in str(error.value)
    assert not (tmp_path / "r" / "raw" / "cityscapes.sha256.json").exists()


def test_download_messages_say_what_happened(tmp_path, caplog):
    served = tmp_path / "server"
    archive = make_gta5(served, [1, 2])[0]
    with serve(served, cut={"01_images.zip"}, ignore_range=True) as (url, log):
        out = download(url + "01_images.zip", tmp_path / "dl" / "01_images.zip", backoff=0.01)
    assert sha256_file(out) == sha256_file(archive) and [r is not None for _, r in log] == [False, True]
    assert "the server ignored the request to resume" in caplog.text
    with pytest.raises(DownloadError) as error:  # nothing listens on port 9: no partial file to speak of
        download("http://127.0.0.1:9/x.zip", tmp_path / "dl" / "x.zip", retries=0, backoff=0.01, progress=False)
    assert "partial file" not in str(error.value) and "rerun to try again" in str(error.value)


def test_ctrl_c_ends_a_command_without_a_traceback(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("diga.data.ingest.acquire", interrupted)
    config = json.dumps({"benchmark": "data", "seeds": [0], "data": {
        "root": "r", "source": {"root": "r", "train_list": "-"},
        "target": {"root": "r", "train_list": "-", "val_list": "-"}}})
    assert cli.main(["fetch", "--config", config, "--dataset", "gta5", "--out", "x.json"]) == 130
    error = capsys.readouterr().err
    assert "diga fetch: interrupted (Ctrl-C)" in error and "a partial download resumes" in error
    assert "Traceback" not in error


# ------------------------------------------------------------------------------------------ case 5: the file at fault


@pytest.mark.parametrize("dataset", ["cityscapes", "gta5"])
def test_a_truncated_label_is_named_with_its_archive_not_its_image(tmp_path, dataset):
    if dataset == "cityscapes":
        archives = make_cityscapes(tmp_path / "archives", truncated_labels=("aachen_000000_000001",))
        label, archive = "gtFine/train/aachen/aachen_000000_000001_gtFine_labelIds.png", "gtFine_trainvaltest.zip"
        image = "leftImg8bit/train/aachen/aachen_000000_000001_leftImg8bit.png"
    else:
        archives = make_gta5(tmp_path / "archives", [1, 2, 3], broken={2: "truncated"})
        label, archive, image = "labels/00002.png", "01_labels.zip", "images/00002.png"
    root = tmp_path / "resources"
    receipt = acquire(dataset, spec(archive_dir=str(tmp_path / "archives"), archive_names=[a.name for a in archives]),
                      root, root / "raw" / f"{dataset}.json", progress=False)
    manifest = prepare(dataset, receipt["tree"], root / dataset, 19, receipt=receipt)
    assert manifest["broken"] == 1
    [broken] = json.loads((root / dataset / "report.json").read_text())["broken"]
    assert (broken["file"], broken["archive"], broken["image"]) == (label, archive, image)
    assert broken["problem"].startswith("label unreadable") and "truncated" in broken["problem"].lower()
    assert f"- `{label}` (from {archive}): label unreadable" in (root / dataset / "report.md").read_text()


# ------------------------------------------------------------------------------------------ case 4: temporary folders


def test_only_temporary_folders_of_dead_processes_are_removed(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
    dead = tmp_path / f".out.tmp-{HOST}-{finished}"
    old_style = tmp_path / f".out.tmp-{finished}"                  # the name before the host was part of it
    live = tmp_path / f".out.tmp-{HOST}-{os.getppid()}"             # a concurrent job that is still running
    elsewhere = tmp_path / f".out.tmp-othernode-{finished}"         # another node's job: its pid means nothing here
    for folder in (dead, old_style, live, elsewhere):
        folder.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "done").write_text("yes")
    assert (tmp_path / "out" / "done").is_file()
    assert sorted(p.name for p in tmp_path.glob(".out.tmp-*")) == sorted([live.name, elsewhere.name])


def test_a_killed_process_not_yet_collected_counts_as_dead(tmp_path):
    # A zombie still answers kill(pid, 0); a container's init may never collect an orphan, so its folder must go.
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "Z" not in open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1][:3]:
        time.sleep(0.05)
    zombie = tmp_path / f".out.tmp-{HOST}-{child.pid}"
    zombie.mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "done").write_text("yes")
    child.wait()
    assert not zombie.exists()


# ------------------------------------------------------------------------------------------ the rules


def data_workdir(tmp_path):
    """A workdir for the data rules of tests/configs/tiny_gta5.yaml with both datasets as archives in archives/."""
    make_gta5(tmp_path / "archives" / "gta5", [1, 2, 3])
    make_cityscapes(tmp_path / "archives" / "cityscapes")
    (tmp_path / "archives.yaml").write_text(yaml.safe_dump({"datasets": {"gta5": {
        "way": "archives", "archive_dir": "archives/gta5"}}}))
    return ["--configfile", str(TINY_GTA5), "archives.yaml"]


def test_rules_show_the_error_then_accept_the_good_copy_and_a_pin_reruns_nothing(tmp_path):
    config = data_workdir(tmp_path)
    good = tmp_path / "good.zip"
    leftimg = tmp_path / "archives" / "cityscapes" / "leftImg8bit_trainvaltest.zip"
    shutil.copy(leftimg, good)
    leftimg.write_bytes(leftimg.read_bytes()[: leftimg.stat().st_size // 2])
    failed = run_snakemake("--cores", "1", "--until", "prepare", *config, cwd=tmp_path, check=False)
    assert failed.returncode != 0
    # Case 7: the message itself reaches the console, and the log keeps it too.
    assert f"{leftimg.relative_to(tmp_path)}: not a readable zip" in failed.stdout + failed.stderr
    assert "not a readable zip" in (tmp_path / "resources" / "logs" / "fetch_cityscapes.log").read_text()
    shutil.copy(good, leftimg)
    done = run_snakemake("--cores", "1", "--until", "prepare", *config, cwd=tmp_path)
    recorded = json.loads((tmp_path / "resources" / "raw" / "cityscapes.sha256.json").read_text())
    assert recorded["leftImg8bit_trainvaltest.zip"] == sha256_file(good)
    # Case 3: pin the checksums printed on the console, delete GTA5's archives (the README allows it) and move the
    # Cityscapes ones elsewhere (mv keeps their size and time): nothing reruns.
    pins = snippets(failed.stdout + failed.stderr + done.stdout + done.stderr)  # GTA5's fetch ran in the first run
    assert sorted(next(iter(yaml.safe_load(p)["datasets"])) for p in pins) == ["cityscapes", "gta5"]
    (tmp_path / "pins.yaml").write_text(pins[0])
    (tmp_path / "pins2.yaml").write_text(pins[1])
    shutil.rmtree(tmp_path / "archives" / "gta5")
    (tmp_path / "archives" / "cityscapes").rename(tmp_path / "moved")
    (tmp_path / "moved.yaml").write_text("datasets: {cityscapes: {archive_dir: moved}}\n")
    check = run_snakemake("-n", "--until", "prepare", *config, "pins.yaml", "pins2.yaml", "moved.yaml", cwd=tmp_path)
    assert job_counts(check.stdout) == {}, check.stdout  # no job to run
    # And a forced fetch without the deleted archives uses the extracted tree instead of failing.
    receipt = "resources/raw/gta5.json"  # one dataset's fetch job, by its output
    forced = run_snakemake("--cores", "1", "--forcerun", receipt, "--until", receipt, *config, "pins.yaml",
                           cwd=tmp_path)
    assert "using resources/raw/gta5, extracted from them before" in forced.stdout + forced.stderr
    # A deleted extracted tree is noticed: its fetch (and prepare) run again.
    shutil.rmtree(tmp_path / "resources" / "raw" / "cityscapes")
    check = run_snakemake("-n", "--until", "prepare", *config, "pins.yaml", "pins2.yaml", "moved.yaml", cwd=tmp_path)
    assert job_counts(check.stdout) == {"fetch": 1, "prepare": 1}


def test_a_replaced_archive_reruns_the_fetch_which_stops_until_the_new_checksum_is_pinned(tmp_path):
    config = data_workdir(tmp_path)
    run_snakemake("--cores", "1", "--until", "prepare", *config, cwd=tmp_path)
    make_cityscapes(tmp_path / "v2", {"train": {"aachen": 3}, "val": {"lindau": 1}})  # another version
    time.sleep(1.1)  # a new modification time, in whole seconds
    for archive in (tmp_path / "v2").iterdir():
        shutil.copy(archive, tmp_path / "archives" / "cityscapes" / archive.name)
    dry = run_snakemake("-n", "--until", "prepare", *config, cwd=tmp_path)
    assert job_counts(dry.stdout) == {"fetch": 1, "prepare": 1}
    failed = run_snakemake("--cores", "1", "--until", "prepare", *config, cwd=tmp_path, check=False)
    console = failed.stdout + failed.stderr
    assert failed.returncode != 0
    for name in ("gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip"):
        assert f"archives/cityscapes/{name}: sha256 {sha256_file(tmp_path / 'v2' / name)} differs from" in console
    assert "in resources/raw/cityscapes.sha256.json, recorded when this archive was last ingested" in console
    (tmp_path / "pin.yaml").write_text(snippets(console)[0])
    run_snakemake("--cores", "1", "--until", "prepare", *config, "pin.yaml", cwd=tmp_path)
    manifest = json.loads((tmp_path / "resources" / "cityscapes" / "manifest.json").read_text())
    assert manifest["count"] == {"train": 3, "val": 1}
    check = run_snakemake("-n", "--until", "prepare", *config, "pin.yaml", cwd=tmp_path)
    assert job_counts(check.stdout) == {}, check.stdout  # no job to run


STALL = '''
import os, time
if os.environ.get("STALL_AT"):  # pause a diga job where the test wants to kill it, and say where it is
    def _stall(*args, **kwargs):
        with open(os.environ["STALL_MARK"], "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(300)
    if os.environ["STALL_AT"] == "extract":
        import diga.data.archives as module
        module.fix_backslash_names = _stall
    else:
        import diga.data.prepare as module
        module.write_streams = _stall
'''


def test_temporary_folders_of_jobs_killed_mid_extraction_and_mid_prepare_are_removed_by_the_rerun(tmp_path):
    config = data_workdir(tmp_path)
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(STALL)
    mark = tmp_path / "stalled"
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", "--nolock",
               "--until", "prepare", *config]
    for stage, folder in (("extract", tmp_path / "resources" / "raw"), ("prepare", tmp_path / "resources")):
        env = {**os.environ, "STALL_AT": stage, "STALL_MARK": str(mark),
               "PYTHONPATH": os.pathsep.join([str(tmp_path / "hook"), os.environ.get("PYTHONPATH", "")])}
        job = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not mark.exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.1)
        assert mark.exists(), f"the {stage} job never reached the pause"
        time.sleep(0.2)
        stalled = int(mark.read_text())
        for group in {os.getpgid(stalled), job.pid}:  # the whole job, SIGKILL: nothing can clean up
            os.killpg(group, signal.SIGKILL)
        job.wait()
        mark.unlink()
        left = list(folder.glob(f".*.tmp-{HOST}-{stalled}"))
        assert left and left[0].is_dir(), f"no temporary folder to test the clean-up with at {stage}"
    # --nolock: the killed runs left Snakemake's lock behind (a user would run `snakemake --unlock`).
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "left by a killed run" in rerun.stdout + rerun.stderr
    assert list((tmp_path / "resources").glob(".*.tmp-*")) == []
    assert list((tmp_path / "resources" / "raw").glob(".*.tmp-*")) == []
    assert (tmp_path / "resources" / "cityscapes" / "manifest.json").is_file()
