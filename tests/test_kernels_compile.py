"""Compile every shipped Triton config of the top-k kernel for sm_90 and check ptxas reports no spills.

No GPU is needed: ``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))`` runs the whole
pipeline down to a cubin with the ``ptxas`` shipped in the triton wheel
(``triton/backends/nvidia/bin``). Triton decides interpreter vs compiler when ``@triton.jit``
decorates a function (``triton.knobs.runtime.interpret`` reads ``TRITON_INTERPRET``), so the
compile runs in fresh subprocesses whose environment does not have ``TRITON_INTERPRET`` (conftest
sets it for this process). Each subprocess gets an empty ``TRITON_CACHE_DIR`` so ptxas really runs,
and ``knobs.nvidia.dump_ptxas_log`` makes triton print ptxas' ``-v`` report, which is parsed here.
The launch specializes 16-byte aligned pointers and strides (d a multiple of 16), as here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("triton")

from multimodal_store.kernels.configs import STAGE1_TILES, max_k_pad

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = r"""
import contextlib, io, json, re, sys, time, warnings
warnings.filterwarnings("ignore")
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from multimodal_store.kernels import triton_topk as tk

assert not tk.INTERPRET, "TRITON_INTERPRET leaked into the compile subprocess"
fn = tk._topk_stage1.fn  # the JITFunction under @triton.autotune
assert isinstance(fn, triton.runtime.jit.JITFunction), type(fn)
triton.knobs.nvidia.dump_ptxas_log = True
ALIGNED = ["q_ptr", "x_ptr", "qinv_ptr", "scale_ptr", "norm_ptr", "mask_ptr", "out_ptr",
           "D", "stride_q", "stride_x", "stride_m"]
attrs = {(fn.arg_names.index(a),): [["tt.divisibility", 16]] for a in ALIGNED}
for v in json.loads(sys.argv[1]):
    sig = {"q_ptr": v["q"], "x_ptr": v["x"], "qinv_ptr": "*fp32", "scale_ptr": "*fp32", "norm_ptr": "*fp32",
           "mask_ptr": "*u8", "out_ptr": "*i64", "B": "i32", "N": "i32", "D": "i32", "stride_q": "i32",
           "stride_x": "i32", "stride_m": "i32", "n_splits": "i32", "B_BUCKET": "i32"}
    const = v["const"]
    sig.update({name: "constexpr" for name in const})
    t0 = time.time()
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        triton.compile(ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs),
                       target=GPUTarget("cuda", 90, 32),
                       options={"num_warps": v["num_warps"], "num_stages": v["num_stages"]})
    text = log.getvalue()
    spills = [list(map(int, m)) for m in re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)]
    regs = [int(r) for r in re.findall(r"Used (\d+) registers", text)]
    print("RESULT " + json.dumps({"name": v["name"], "spills": spills, "regs": regs,
                                  "seconds": round(time.time() - t0, 1)}), flush=True)
"""


def _const(tile: tuple, merge: int, k_pad: int, **over: object) -> dict:
    bq, bn, bd, _, _, _ = tile
    c = {
        "K_PAD": k_pad,
        "LOG_K": k_pad.bit_length() - 1,
        "MERGE": merge,
        "METRIC": 1,
        "HAS_SCALE": False,
        "HAS_NORMS": True,
        "HAS_MASK": True,
        "MASK_2D": False,
        "X_INT8": False,
        "FP32_DOT": False,
        "UPCAST": False,
        "BLOCK_Q": bq,
        "BLOCK_N": bn,
        "LOG_N": bn.bit_length() - 1,
        "BLOCK_D": bd,
    }
    c.update(over)
    return c


def _variants() -> list[dict]:
    """Every shipped sm_90 config, at the largest K_PAD of each merge it ships with (its register
    worst case), float16 cosine with a mask; plus float32 (ieee dot) / bfloat16 / int8 variants."""
    out = []
    tiles = STAGE1_TILES["cuda"]
    for tile in tiles:
        for merge in tile[5]:
            k_pad = max_k_pad(tile, merge)
            assert k_pad, (tile, merge)
            out.append(
                {
                    "name": f"{tile[:5]} merge={merge} K={k_pad} fp16",
                    "tile": list(tile[:5]),
                    "q": "*fp16",
                    "x": "*fp16",
                    "const": _const(tile, merge, k_pad),
                }
            )
    t = tiles[0]
    extra = [
        (
            "fp32 ieee l2 2-D mask",
            "*fp32",
            "*fp32",
            {"FP32_DOT": True, "METRIC": 2, "HAS_NORMS": False, "MASK_2D": True},
        ),
        ("bf16 ip", "*bf16", "*bf16", {"METRIC": 0, "HAS_NORMS": False}),
        ("int8 cosine scales", "*fp16", "*i8", {"X_INT8": True, "HAS_SCALE": True, "HAS_NORMS": False}),
    ]
    for name, qt, xt, over in extra:
        out.append(
            {
                "name": f"{t[:5]} merge=0 K=64 {name}",
                "tile": list(t[:5]),
                "q": qt,
                "x": xt,
                "const": _const(t, 0, 64, **over),
            }
        )
    for v in out:
        v["num_warps"], v["num_stages"] = v["tile"][3], v["tile"][4]
    return out


def _ptxas_path() -> Path:
    import triton

    return Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


def test_ptxas_ships_with_triton() -> None:
    """The compile test needs the wheel's ptxas; say clearly if it is missing or cannot run."""
    ptxas = _ptxas_path()
    assert ptxas.is_file(), f"{ptxas} is missing: the triton wheel ships ptxas under backends/nvidia/bin"
    assert os.access(ptxas, os.X_OK), f"{ptxas} is not executable"
    out = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ptxas" in out.stdout.lower(), out.stderr


@pytest.mark.slow
def test_every_shipped_config_compiles_for_sm90_without_spills(tmp_path: Path) -> None:
    variants = _variants()
    # two balanced groups (the bitonic kernels take longest), compiled in parallel
    order = sorted(variants, key=lambda v: -v["const"]["MERGE"] * v["const"]["K_PAD"])
    groups: list[list[dict]] = [[], []]
    for j, v in enumerate(order):
        groups[j % 2 if j < 2 else (0 if len(groups[0]) < len(groups[1]) else 1)].append(v)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    procs = []
    start = time.time()
    for j, group in enumerate(groups):
        genv = dict(env, TRITON_CACHE_DIR=str(tmp_path / f"cache{j}"))  # empty cache: ptxas runs
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _SCRIPT, json.dumps(group)],
                cwd=REPO,
                env=genv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    results = {}
    for p in procs:
        out, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-4000:]
        for line in out.splitlines():
            if line.startswith("RESULT "):
                r = json.loads(line[len("RESULT ") :])
                results[r["name"]] = r
    elapsed = time.time() - start
    assert set(results) == {v["name"] for v in variants}, sorted(results)
    compiled_tiles = {tuple(v["tile"]) for v in variants}
    assert compiled_tiles == {t[:5] for t in STAGE1_TILES["cuda"]}
    report = "\n".join(
        f"{n}: regs={r['regs']} spills={r['spills']} {r['seconds']}s" for n, r in sorted(results.items())
    )
    for name, r in results.items():
        assert r["spills"], f"{name}: no ptxas report (was ptxas skipped?)\n{report}"
        assert all(st == 0 and ld == 0 for st, ld in r["spills"]), f"{name} spills registers\n{report}"
    print(f"\ncompiled {len(results)} variants in {elapsed:.0f}s\n{report}")


def test_configs_are_well_formed() -> None:
    from multimodal_store.kernels.configs import fits, prune_stage1, stage1_configs

    for backend in ("cuda", "hip", "interpreter"):
        cfgs = stage1_configs(backend)
        assert cfgs and all(c.kwargs["BLOCK_Q"] >= 16 and c.kwargs["BLOCK_D"] >= 16 for c in cfgs)
        assert all(1 << c.kwargs["LOG_N"] == c.kwargs["BLOCK_N"] for c in cfgs)
    cuda = stage1_configs("cuda")
    # every K_PAD the launcher uses has at least one config for its merge strategy
    for k_pad in (1, 2, 4, 8, 16, 32, 64):
        assert any(fits(t, k_pad, 0) for t in STAGE1_TILES["cuda"]), k_pad
        assert prune_stage1(cuda, {"B": 1}, K_PAD=k_pad, MERGE=0)
    for k_pad in (128, 256):
        kept = prune_stage1(cuda, {"B": 300}, K_PAD=k_pad, MERGE=1)
        assert kept and all(c.kwargs["BLOCK_N"] >= k_pad for c in kept)
    assert all(c.kwargs["BLOCK_Q"] == 16 for c in prune_stage1(cuda, {"B": 4}, K_PAD=8, MERGE=0))
    assert re.match(r"^\d", str(len(cuda)))
