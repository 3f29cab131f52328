"""The API's protos stand on their own: any protoc user generates from protos/
plus the googleapis include the README names, and every service, RPC, message,
field, enum and enum value carries a comment."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import google.rpc
from google.protobuf import descriptor_pb2

REPO = pathlib.Path(__file__).resolve().parent.parent
PROTO = "session_authority/v1/session_service.proto"
# What the README tells protoc users: the directory holding google/rpc/*.proto
# of the googleapis-common-protos package.
GOOGLEAPIS_INCLUDE = pathlib.Path(next(iter(google.rpc.__path__))).parents[1]


# The pinned grpc_tools protoc has the Python generator only; plain protoc (CI
# installs Debian's protobuf-compiler) has C++ and Java too.
SYSTEM_PROTOC = shutil.which("protoc")


def protoc(*arguments: str, system: bool = False) -> subprocess.CompletedProcess[str]:
    command = (
        [SYSTEM_PROTOC] if system and SYSTEM_PROTOC else [sys.executable, "-m", "grpc_tools.protoc"]
    )
    return subprocess.run([*command, *arguments], capture_output=True, text=True, check=False)


def test_generating_from_protos_and_the_googleapis_include(tmp_path: pathlib.Path) -> None:
    languages = ["python", *(["cpp", "java"] if SYSTEM_PROTOC else [])]
    for language in languages:
        out = tmp_path / language
        out.mkdir()
        result = protoc(
            f"-I{REPO / 'protos'}",
            f"-I{GOOGLEAPIS_INCLUDE}",
            f"--{language}_out={out}",
            PROTO,
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
            system=language != "python",
        )
        assert result.returncode == 0, result.stderr
        generated = {path.name for path in out.rglob("*") if path.is_file()}
        expected = {
            "python": {"session_service_pb2.py", "error_details_pb2.py", "status_pb2.py"},
            "cpp": {"session_service.pb.cc", "error_details.pb.cc", "status.pb.cc"},
            "java": {"ErrorInfo.java", "BadRequest.java", "InvalidClaims.java"},
        }[language]
        assert expected <= generated, (language, sorted(generated))


def _descriptor(tmp_path: pathlib.Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "api.binpb"
    result = protoc(
        f"-I{REPO / 'protos'}", "--include_source_info", f"--descriptor_set_out={out}", PROTO
    )
    assert result.returncode == 0, result.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    (api,) = [f for f in files.file if f.name == PROTO]
    return api


def test_every_element_of_the_api_has_a_comment(tmp_path: pathlib.Path) -> None:
    api = _descriptor(tmp_path)
    commented = {
        tuple(location.path)
        for location in api.source_code_info.location
        if location.leading_comments.strip()
    }
    missing: list[str] = []

    def need(path: tuple[int, ...], name: str) -> None:
        if path not in commented:
            missing.append(name)

    # Field numbers of FileDescriptorProto, DescriptorProto, ... (descriptor.proto).
    for s, service in enumerate(api.service):
        need((6, s), service.name)
        for m, method in enumerate(service.method):
            need((6, s, 2, m), f"{service.name}.{method.name}")
    for m, message in enumerate(api.message_type):
        need((4, m), message.name)
        for f, field in enumerate(message.field):
            need((4, m, 2, f), f"{message.name}.{field.name}")
    for e, enum in enumerate(api.enum_type):
        need((5, e), enum.name)
        for v, value in enumerate(enum.value):
            need((5, e, 2, v), f"{enum.name}.{value.name}")
    assert not missing, f"no comment on: {', '.join(missing)}"


def test_every_rpc_comment_says_which_errors_it_returns(tmp_path: pathlib.Path) -> None:
    api = _descriptor(tmp_path)
    comments = {
        tuple(location.path): location.leading_comments
        for location in api.source_code_info.location
    }
    silent = [
        method.name
        for m, method in enumerate(api.service[0].method)
        if "Errors:" not in comments.get((6, 0, 2, m), "")
    ]
    assert not silent, f"RPCs whose comment lists no errors: {', '.join(silent)}"


def test_the_readme_protoc_example_runs_as_written(tmp_path: pathlib.Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## From other languages", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    lines = [line for line in block.splitlines() if not line.startswith("pip install ")]
    script = "\n".join(lines).replace("python3 ", f"{sys.executable} ")
    if not SYSTEM_PROTOC:  # the pinned protoc, with the one generator it has
        script = script.replace("protoc ", f"{sys.executable} -m grpc_tools.protoc ")
        script = script.replace("--cpp_out=", "--python_out=")
    (tmp_path / "protos").symlink_to(REPO / "protos")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    generated = {path.name for path in (tmp_path / "gen").rglob("*") if path.is_file()}
    assert ("session_service.pb.cc" if SYSTEM_PROTOC else "session_service_pb2.py") in generated
