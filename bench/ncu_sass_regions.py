#!/usr/bin/env python3
"""ncu_sass_regions.py: where a probe kernel's cycles go, from ncu's SASS source page.

Reads the CSV of `ncu -i REP --page source --csv --print-source sass` for a kernel that
runs its body REPS times with WARPS warps (epilogue_probe --ncu: 20000 repetitions, 8
warps), and converts warp-stall samples into cycles per repetition per warp, using the
measured cycles of one repetition (ncu's elapsed cycles / REPS) to scale them. Prints the
regions (runs of instructions executed by the same number of warps, cut at each CTA
barrier) with their top stall reasons, then, with --listing, every executed instruction.

  bench/ncu_sass_regions.py SRC.csv CYCLES_PER_REP [--reps 20000] [--warps 8] [--listing]
"""
import argparse
import collections
import csv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("cycles_per_rep", type=float)
    ap.add_argument("--reps", type=int, default=20000)
    ap.add_argument("--warps", type=int, default=8)
    ap.add_argument("--listing", action="store_true")
    a = ap.parse_args()
    rows = list(csv.reader(open(a.csv)))
    hdr, data = rows[1], rows[2:]
    stall = [i for i, h in enumerate(hdr) if h.startswith("stall_") and "Not Issued" not in h]
    num = lambda s: int(s.replace(",", "") or 0)
    ins = []
    for r in data:
        try:
            executed = num(r[5])
        except ValueError:
            continue
        if executed:
            ins.append(dict(addr=r[0][-4:], src=r[1].strip(), warps=executed / a.reps,
                            samples=num(r[2]), stalls={hdr[i][6:]: num(r[i]) for i in stall}))
    total = sum(i["samples"] for i in ins)
    per_cycle = total / (a.warps * a.cycles_per_rep * a.reps)  # samples a warp-cycle, a rep
    cycles = lambda samples, warps: samples / (per_cycle * warps * a.reps)
    print(f"{total} samples, {len(ins)} executed instructions")
    regions, cur = [], None
    for i in ins:
        if i["warps"] < 1:
            continue  # set-up before the repetitions
        if cur is None or cur["warps"] != i["warps"] or "BAR.SYNC" in i["src"]:
            cur = dict(warps=i["warps"], start=i["addr"], n=0, samples=0,
                       stalls=collections.Counter(), first=i["src"][:36])
            regions.append(cur)
        cur["n"] += 1
        cur["samples"] += i["samples"]
        cur["end"] = i["addr"]
        cur["stalls"].update(i["stalls"])
    for g in regions:
        c = cycles(g["samples"], g["warps"])
        if c >= 10:
            top = ", ".join(f"{k} {cycles(v, g['warps']):.0f}" for k, v in g["stalls"].most_common(4))
            print(f"{g['start']}-{g['end']} warps {g['warps']:4.1f} instrs {g['n']:4d} "
                  f"cycles/warp {c:7.1f}  {g['first']:36s} {top}")
    if a.listing:
        for i in ins:
            if i["warps"] < 1:
                continue
            top = " ".join(f"{k}:{cycles(v, i['warps']):.0f}"
                           for k, v in sorted(i["stalls"].items(), key=lambda x: -x[1])[:2] if v)
            print(f"{i['addr']} warps {i['warps']:4.1f} {cycles(i['samples'], i['warps']):6.1f} "
                  f"{i['src'][:58]:58s} {top}")


if __name__ == "__main__":
    main()
