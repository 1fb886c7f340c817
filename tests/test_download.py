"""Download code against a loopback Zenodo stand-in."""

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer

import pytest

from asd_keras.data import download


def _zip_bytes(machine):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(f"{machine}/train/section_00_source_train_normal_0000_a_1.wav", b"RIFF")
        zf.writestr(f"{machine}/attributes_00.csv", "file_name,d1p,d1v\n")
    return buffer.getvalue()


class _Zenodo:
    def __init__(self):
        self.files = {"dev_fan.zip": _zip_bytes("fan"), "dev_valve.zip": _zip_bytes("valve")}
        self.md5 = {k: hashlib.md5(v).hexdigest() for k, v in self.files.items()}
        self.ranges = []
        self.fail_after = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _handler(self):
        zenodo = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path.startswith("/api/records/"):
                    record = self.path.rsplit("/", 1)[-1]
                    body = json.dumps({"files": [
                        {"key": k, "size": len(v), "checksum": f"md5:{zenodo.md5[k]}",
                         "links": {"self": f"{zenodo.url}/files/{record}/{k}"}}
                        for k, v in zenodo.files.items()]}).encode()
                    self.send_response(200)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                name = self.path.rsplit("/", 1)[-1]
                data = zenodo.files[name]
                start = 0
                if "Range" in self.headers:
                    zenodo.ranges.append(self.headers["Range"])
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

        return Handler


@pytest.fixture
def zenodo():
    server = _Zenodo()
    yield server
    server.server.shutdown()


def test_download_verifies_and_unzips(zenodo, tmp_path):
    target = download.download(2022, "dev", tmp_path, machine_types=["fan", "valve"],
                               base_url=zenodo.url, progress=False)
    assert target == tmp_path / "dev_data" / "raw"
    assert (target / "fan" / "attributes_00.csv").is_file()
    assert (target / "valve" / "train").is_dir()
    assert not list((tmp_path / ".archives").glob("*.zip"))
    # A second call finds the stamps and downloads nothing.
    zenodo.files.clear()
    download.download(2022, "dev", tmp_path, machine_types=["fan"], base_url=zenodo.url,
                      progress=False)


def test_download_resumes_a_partial_file(zenodo, tmp_path):
    data = zenodo.files["dev_fan.zip"]
    part = tmp_path / "dev_fan.zip.part"
    part.write_bytes(data[:40])
    download.download_file(f"{zenodo.url}/files/1/dev_fan.zip", tmp_path / "dev_fan.zip",
                           size=len(data), md5=zenodo.md5["dev_fan.zip"], progress=False)
    assert zenodo.ranges == ["bytes=40-"]
    assert (tmp_path / "dev_fan.zip").read_bytes() == data


def test_checksum_mismatch_removes_the_file(zenodo, tmp_path):
    with pytest.raises(ValueError, match="md5"):
        download.download_file(f"{zenodo.url}/files/1/dev_fan.zip", tmp_path / "x.zip",
                               size=len(zenodo.files["dev_fan.zip"]), md5="0" * 32,
                               progress=False)
    assert not list(tmp_path.iterdir())


def test_missing_archive_and_bad_requests(zenodo, tmp_path):
    with pytest.raises(ValueError, match="dev_gearbox.zip"):
        download.download(2022, "dev", tmp_path, machine_types=["gearbox"],
                          base_url=zenodo.url, progress=False)
    with pytest.raises(ValueError, match="toaster"):
        download.plan_download(2022, "dev", ["toaster"])
    with pytest.raises(ValueError, match="2019"):
        download.plan_download(2019, "dev")
    with pytest.raises(ConnectionError, match="Zenodo record"):
        download.record_files("1", base_url="http://127.0.0.1:9", timeout=2)


def test_catalogue_covers_every_year():
    for year in range(2020, 2027):
        for split in ("dev", "eval"):
            assert download.plan_download(year, split)
    assert ("19336329", "dev_ToyCar_r2.zip") in download.plan_download(2026, "dev", ["ToyCar"])
