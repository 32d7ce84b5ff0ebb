"""`sdcl devices`: the OpenCL platforms and devices, with the capabilities that matter for SD kernels."""

from __future__ import annotations

import json


def add_parser(sub, parents) -> None:
    d = sub.add_parser("devices", parents=parents, help="list OpenCL platforms and devices with the capabilities "
                                                         "that matter")
    d.add_argument("--json", action="store_true")
    d.set_defaults(run=run)


def run(args) -> int:
    from sdcl.opencl_impl.devices import DeviceError, default_device, device_info, platforms
    plats = platforms()
    if not plats:
        default_device()  # raises the error that says how to install PoCL
    try:
        default = default_device().int_ptr
    except DeviceError:
        default = None
    rows = [{"selector": f"{i}:{j}", **device_info(d), "default": d.int_ptr == default}
            for i, p in enumerate(plats) for j, d in enumerate(p.get_devices())]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        star = "*" if r["default"] else " "
        print(f"{star} {r['selector']:5} {r['platform']} / {r['device']} ({r['type']}, {r['version']})")
        print(f"        compute units {r['compute_units']}, max work-group {r['max_work_group_size']}, "
              f"local mem {r['local_mem_kib']} KiB, global mem {r['global_mem_mib']} MiB "
              f"(max alloc {r['max_alloc_mib']} MiB), fp64 {'yes' if r['fp64'] else 'no'}, "
              f"fp16 {'yes' if r['fp16'] else 'no'}")
    print("(* = default; select with --device SELECTOR or PYOPENCL_CTX=SELECTOR)")
    return 0
