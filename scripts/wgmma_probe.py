"""Does NVIDIA's OpenCL compiler take Hopper's sm_90a instructions (wgmma, setmaxnreg) through inline PTX? Builds
tiny kernels only (nothing runs) and prints, for each, the PTX .target the driver emitted or ptxas's error lines.
H100, driver 580.159.04 (docs/results/wgmma-probe-nvidia-h100.txt): the PTX says .target sm_90, with
-cl-nv-arch sm_90a too, and ptxas refuses wgmma and setmaxnreg; mma.sync (sm_80) and fence.proxy.async build.

    python scripts/wgmma_probe.py
"""
import re
import sys

import pyopencl as cl

SRC = {
    "plain": "__kernel void k(__global float *x) { x[get_global_id(0)] += 1.0f; }",
    "wgmma_fence": """__kernel void k(__global float *x) {
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
        x[get_global_id(0)] += 1.0f; }""",
    "wgmma_mma": """__kernel void k(__global float *x, ulong da, ulong db) {
        float d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
        asm volatile("{ .reg .pred p; setp.ne.b32 p, 1, 0;"
                     "wgmma.mma_async.sync.aligned.m64n8k16.f32.f16.f16 {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0; }"
                     : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3) : "l"(da), "l"(db));
        asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
        x[get_global_id(0)] = d0 + d1 + d2 + d3; }""",
    "setmaxnreg": """__kernel void k(__global float *x) {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 240;");
        x[get_global_id(0)] += 1.0f; }""",
    "cp_async_bulk": """__kernel void k(__global float *x) {
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        x[get_global_id(0)] += 1.0f; }""",
}


def main() -> int:
    nvidia = [d for p in cl.get_platforms() for d in p.get_devices() if "NVIDIA" in p.name]
    if not nvidia:
        print("wgmma_probe: no NVIDIA OpenCL device here (inline PTX builds only on NVIDIA's driver)")
        return 2
    ctx = cl.Context(nvidia[:1])
    for name, src in SRC.items():
        for opts in ([], ["-cl-nv-arch", "sm_90a"]):
            try:
                prg = cl.Program(ctx, src).build(options=opts)
                ptx = prg.get_info(cl.program_info.BINARIES)[0].decode(errors="replace")
                tgt = re.search(r"^\.target\s+(\S+)", ptx, re.M)
                print(f"{name:14} {' '.join(opts):22} built, PTX .target {tgt.group(1) if tgt else '?'}")
            except Exception as e:
                lines = [ln.strip() for ln in str(e).splitlines() if "error" in ln and "BUILD_PROGRAM_FAILURE" not in ln]
                msg = " | ".join(lines) or str(e).splitlines()[0]
                print(f"{name:14} {' '.join(opts):22} FAILED: {msg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
