"""`python -m conch_engines` — the embedded default and model repository tools.

    python -m conch_engines up [--model SPEC] [--port N] [--device cpu|auto|cuda:N]
                                                Triton + a model + the gateway (what `make up` runs);
                                                SPEC: smollm2 (default, bundled test model), qwen2, llama3,
                                                a path to a .gguf, or a Hugging Face REPO_ID[:FILE.gguf]
    python -m conch_engines repository DIR      write the bundled model's Triton repository to DIR
    python -m conch_engines serve --model-repository DIR
                                                run tritonserver in the foreground (container entry point)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import bundled, repository
from .embedded import EmbeddedConfig, run
from .triton_server import TritonPorts, TritonServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conch_engines", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    up = commands.add_parser("up", help="run the embedded default in the foreground")
    up.add_argument("--model", default=None, help="preset (smollm2, qwen2, llama3), a .gguf path or a Hugging Face "
                    "REPO_ID[:FILE.gguf] (default: smollm2)")
    up.add_argument("--port", type=int, default=None, help="gateway port (default: $PORT or 8000)")
    up.add_argument("--device", default=None, help="cpu, auto or cuda:N (default: auto)")
    repo = commands.add_parser("repository", help="write the bundled model's Triton model repository")
    repo.add_argument("directory", type=Path)
    serve = commands.add_parser("serve", help="exec tritonserver with the wheel's libraries and this venv's Python")
    serve.add_argument("--model-repository", type=Path, required=True)
    serve.add_argument("--workdir", type=Path, default=Path("/tmp/triton"))
    serve.add_argument("--http-port", type=int, default=8000)
    serve.add_argument("--address", default="0.0.0.0", help="address Triton listens on (0.0.0.0 in a pod)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        server = TritonServer(args.model_repository, args.workdir, TritonPorts.from_http(args.http_port),
                              address=args.address)
        server.exec()
    if args.command == "repository":
        model = bundled.smollm2()
        repository.write_repository(args.directory, repository.llama_cpp_files(model.id, str(model.gguf_path)))
        print(args.directory)
        return 0
    if args.command == "up":
        return run(EmbeddedConfig.from_env(model=args.model, port=args.port, device=args.device))
    if args.command is None:
        # no sub-command is what `make up` ran before sub-commands existed: keep it
        return run(EmbeddedConfig.from_env())
    return 2


if __name__ == "__main__":
    sys.exit(main())
