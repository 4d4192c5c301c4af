"""How many messages a cell can send before a runner that reads them late starts losing them.

nbval sends a cell, waits for the kernel's reply, and only then reads the cell's output messages
(IOPub). Messages that pile up beyond the sockets' buffers are dropped, and if the cell's final
"idle" status is among them, nbval fails with "Timeout of 5 seconds exceeded waiting for output".
A tqdm.auto progress bar sends two widget messages per redraw, which is why ``vitlearn.fit``
redraws at most once a second.

This starts a kernel, runs a cell that redraws a tqdm.auto bar N times without reading IOPub
meanwhile (as nbval does), then counts what arrives:

    python tools/iopub_capacity.py 500 1000 2000 5000
"""

from __future__ import annotations

import sys
from queue import Empty

from jupyter_client.manager import start_new_kernel

CELL = """
from tqdm.auto import tqdm
bar = tqdm(total={n}, mininterval=0)
for _ in range({n}):
    bar.update(1)
bar.close()
print("done")
"""


def run(n: int) -> tuple[int, bool, bool]:
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        msg_id = kc.execute(CELL.format(n=n))
        kc.get_shell_msg(timeout=600)  # the reply: the cell has finished
        count, printed, idle = 0, False, False
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=5)
            except Empty:
                break
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            count += 1
            if msg["msg_type"] == "stream" and "done" in msg["content"]["text"]:
                printed = True
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                idle = True
                break
        return count, printed, idle
    finally:
        km.shutdown_kernel(now=True)


def main(argv: list[str]) -> None:
    print(f"{'redraws':>8} {'messages received':>18} {'last print arrived':>19} {'idle arrived':>13}")
    for n in (int(a) for a in (argv or ["500", "1000", "2000", "5000"])):
        count, printed, idle = run(n)
        print(f"{n:8d} {count:18d} {printed!s:>19} {idle!s:>13}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
