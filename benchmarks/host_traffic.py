"""What of a network stays on the host: ``python benchmarks/host_traffic.py``.

For classic zoo CNNs (random weights, quantized by onnxruntime's quantize_static without
pre-processing, as a user would, and cached in ``build/``) compiled for a configuration: the
operators and regions (runs of operators between accelerator code) left on the host, the
bytes those operators read and write per image, the bytes a board's host link carries per
image (``link_bytes``: the host runtime, ``ffacc.boards.host.run_firmware``, run against a
memory that stands for the board, every accelerator segment ending at once: the inputs it
sends, the host operators' inputs it reads back and outputs it writes, the outputs it reads),
the accelerator's cycles (the ISS cycle model) and the instruction count. Prints a table, then
JSON with every host region.
"""

import json
import struct

from zoo_args import zoo_benchmark_args


class MemoryBoard:
    """The link protocol answered by a memory: the host runtime's traffic without a board
    (an accelerator segment ends at once and leaves memory as it was)."""

    def __init__(self, cfg, mem_bytes):
        self.cfg, self.mem = cfg, bytearray(mem_bytes)

    def exchange(self, frame):
        from ffacc.firmware.csr import Status as AccStatus
        from ffacc.firmware.link import HEADER, Cmd, Status
        cmd, addr, n = HEADER.unpack_from(frame, 1)
        if cmd == Cmd.INFO:
            return Status.OK, struct.pack("<4I", self.cfg.fingerprint(), 0, len(self.mem),
                                          int(self.cfg.target_mhz * 1e6))
        if cmd == Cmd.WRITE_MEM:
            self.mem[addr:addr + n] = frame[8:-2]
        if cmd == Cmd.READ_MEM:
            return Status.OK, bytes(self.mem[addr:addr + n])
        if cmd == Cmd.STATUS:
            return Status.OK, struct.pack("<4I", AccStatus.DONE, 0, 0, 0)
        return Status.OK, b""


def link_bytes(image, cfg):
    """``{"written", "read"}``: the host link's payload bytes of one image's run."""
    import numpy as np
    from ffacc.boards.host import run_firmware, run_serial
    x = {t.name: np.zeros(t.shape, t.dtype) for t in image.tensors if t.role == "input"}
    _, st = run_serial(run_firmware(image, x), MemoryBoard(cfg, image.mem_size))
    return st["link_bytes"]


def main(argv=None):
    args, cfg, models, say = zoo_benchmark_args(__doc__, argv)
    from ffacc.cli import _table
    from ffacc.compiler.compile import host_regions
    from ffacc.compiler.driver import compile_model, layer_report
    rows = []
    for name, path in models:
        say(f"{name}: compiling for {args.config}")
        _, c, _ = compile_model(path, cfg)
        regions = host_regions(c.layers)
        _, tot = layer_report(c.image)
        link = link_bytes(c.image, cfg)
        rows.append({"model": name, "host_operators": len(c.host_ops),
                     "host_regions": len(regions["regions"]),
                     "host_bytes": regions["host_bytes"],
                     "link_bytes": link["written"] + link["read"], "link": link,
                     "cycles": tot["cycles"],
                     "instructions": sum(li.get("pc_count", 0) for li in c.layers),
                     "regions": regions["regions"]})
    heads = ["model", "host_operators", "host_regions", "host_bytes", "link_bytes", "cycles",
             "instructions"]
    print(_table(heads, [[r["model"]] + [f"{r[h]:,}" for h in heads[1:]] for r in rows]))
    print(json.dumps({"config": args.config, "size": args.size, "rows": rows}))


if __name__ == "__main__":
    main()
