"""The exact least number of activations of a tiny crossbar layer, by an integer program.

Not part of imcc and not run by its tests: it needs scipy (HiGHS), which is not a project
dependency. Run it from a scratch virtualenv::

    python -m venv /tmp/ilp && /tmp/ilp/bin/pip install scipy numpy
    /tmp/ilp/bin/python scripts/exact_layer_optimum.py --icg 8 --ocg 1 --slices 4 \
        --map 4x4 --rows 32 --cols 32 [--groups 2] [--stride 1] [--time-limit 600]

Model (the program format's, DESIGN.md section 3, without windows: any activation may take
any rows and columns, so this optimum is a lower bound for every layout the planner can
emit on the same layer, whose activations are windows times tiles). The layer is a `k x k`
convolution with stride `s` and padding `(k - 1) // 2`, `groups` groups of `IC_g -> OC_g`
channels, `S` bit-slice columns per weight, on an `Ho x Wo` output. Rows are the input
elements `(group, c, y, x)` of the padded input; columns the output bit-slice columns
`(group, oc, py, px, s)`; a product is a (row, column) pair whose row lies in the column's
receptive field (padded positions included, as in `lower_bound_cycles`). Activation `t`
drives a row set `x_t` (at most `rows`) and a column set `y_t` (at most `cols`) and can hold
every product of `x_t x y_t`; every product must be held by some activation (the emitter
puts it in one of them and 0 in the others). Binary `x`, `y` and used-activation `u`,
continuous `w[t, e, c] <= min(x[t, e], y[t, c])` with `sum_t w >= 1`; minimize `sum u`.
Activations are ordered (`u_t >= u_{t+1}`) and the first `T` considered is an upper bound
given as `--max-acts`. `--torus` wraps the reads around an `Ho x Wo` input (stride 1): the
interior of a large map, where every input element is read by `k*k` pixels.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix


def instance(groups: int, icg: int, ocg: int, S: int, k: int, stride: int, ho: int, wo: int,
             torus: bool = False) -> tuple[list, list, list[tuple[int, int]]]:
    hi, wi = (ho - 1) * stride + k, (wo - 1) * stride + k  # padded input extent read
    if torus:  # the interior of a large map: reads wrap around
        hi, wi = ho * stride, wo * stride
    rows = [(g, c, y, x) for g in range(groups) for c in range(icg)
            for y in range(hi) for x in range(wi)]
    cols = [(g, o, py, px, s) for g in range(groups) for o in range(ocg)
            for py in range(ho) for px in range(wo) for s in range(S)]
    ridx = {r: i for i, r in enumerate(rows)}
    prods = []
    for ci, (g, _o, py, px, _s) in enumerate(cols):
        for c in range(icg):
            for ty in range(k):
                for tx in range(k):
                    prods.append((ridx[(g, c, (py * stride + ty) % hi,
                                        (px * stride + tx) % wi)], ci))
    return rows, cols, prods


def solve(groups: int, icg: int, ocg: int, S: int, k: int, stride: int, ho: int, wo: int,
          R: int, C: int, T: int, time_limit: float, torus: bool = False) -> dict:
    rows, cols, prods = instance(groups, icg, ocg, S, k, stride, ho, wo, torus)
    nr, nc, npr = len(rows), len(cols), len(prods)
    # variable blocks per activation t: x (nr), y (nc), w (npr), u (1)
    per = nr + nc + npr + 1
    n = T * per
    xo, yo, wo_, uo = 0, nr, nr + nc, nr + nc + npr

    def v(t: int, off: int, i: int = 0) -> int:
        return t * per + off + i

    r_i, c_i, vals, lo, hi = [], [], [], [], []
    row = 0

    def add(entries: list[tuple[int, float]], lb: float, ub: float) -> None:
        nonlocal row
        for j, a in entries:
            r_i.append(row)
            c_i.append(j)
            vals.append(a)
        lo.append(lb)
        hi.append(ub)
        row += 1

    pe = np.array([p[0] for p in prods])
    pc = np.array([p[1] for p in prods])
    # vectorized w <= x, w <= y
    blocks_r, blocks_c, blocks_v = [], [], []
    base = 0
    for t in range(T):
        idx = np.arange(npr)
        w = t * per + wo_ + idx
        for other in (t * per + xo + pe, t * per + yo + pc):
            rr = base + idx
            blocks_r += [rr, rr]
            blocks_c += [w, other]
            blocks_v += [np.ones(npr), -np.ones(npr)]
            base += npr
    n_wxy = base
    row = n_wxy
    lo_wxy = [-np.inf] * n_wxy
    hi_wxy = [0.0] * n_wxy
    for p in range(npr):  # cover
        add([(v(t, wo_, p), 1.0) for t in range(T)], 1.0, np.inf)
    for t in range(T):
        add([(v(t, xo, i), 1.0) for i in range(nr)] + [(v(t, uo), -R)], -np.inf, 0.0)
        add([(v(t, yo, i), 1.0) for i in range(nc)] + [(v(t, uo), -C)], -np.inf, 0.0)
        if t + 1 < T:
            add([(v(t, uo), 1.0), (v(t + 1, uo), -1.0)], 0.0, np.inf)
    A = coo_matrix((np.concatenate(blocks_v + [np.array(vals)]),
                    (np.concatenate(blocks_r + [np.array(r_i)]),
                     np.concatenate(blocks_c + [np.array(c_i)]))), shape=(row, n)).tocsr()
    lb_all = np.array(lo_wxy + lo)
    ub_all = np.array(hi_wxy + hi)
    cost = np.zeros(n)
    integ = np.zeros(n)
    for t in range(T):
        cost[v(t, uo)] = 1.0
        integ[t * per + xo: t * per + xo + nr] = 1
        integ[t * per + yo: t * per + yo + nc] = 1
        integ[v(t, uo)] = 1
    t0 = time.process_time()
    res = milp(cost, constraints=LinearConstraint(A, lb_all, ub_all), integrality=integ,
               bounds=Bounds(0, 1), options={"time_limit": time_limit, "disp": False})
    out = {"rows_el": nr, "cols_el": nc, "products": npr, "T_max": T,
           "status": int(res.status), "message": res.message,
           "cpu_s": round(time.process_time() - t0, 1)}
    if res.x is not None:
        out["best"] = int(round(res.fun))
    out["dual_bound"] = getattr(res, "mip_dual_bound", None)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=1)
    ap.add_argument("--icg", type=int, required=True)
    ap.add_argument("--ocg", type=int, required=True)
    ap.add_argument("--slices", type=int, default=4)
    ap.add_argument("--kernel", type=int, default=3)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--map", default="4x4", help="output Ho x Wo")
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--cols", type=int, default=32)
    ap.add_argument("--max-acts", type=int, required=True,
                    help="activations the program may use at most (an upper bound)")
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds")
    ap.add_argument("--torus", action="store_true",
                    help="wrap reads around (a large map's interior, no padding)")
    a = ap.parse_args()
    ho, wo = (int(s) for s in a.map.split("x"))
    out = solve(a.groups, a.icg, a.ocg, a.slices, a.kernel, a.stride, ho, wo, a.rows,
                a.cols, a.max_acts, a.time_limit, a.torus)
    print(json.dumps({**vars(a), **out}))


if __name__ == "__main__":
    main()
