"""Render bench/results/cache_*.json as the markdown table in docs/cache-format.md."""

import json
import sys
from pathlib import Path

rows = []
for path in sorted(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results").glob("cache_n*.json"),
                   key=lambda p: json.loads(p.read_text())["dim"]):
    r = json.loads(path.read_text())
    files = next(x for x in r["rows"] if x["method"].startswith("one .npy"))
    print(f"\n**{r['n']} sequences of {r['lengths'][0]}-{r['lengths'][1]} tokens, dim {r['dim']} "
          f"({r['content_bytes'] / 1e9:.2f} GB of float16 content), best of {r['rounds']} "
          "interleaved rounds**\n")
    print("| method | write s | write + flush s | read all s | read 10% s | bytes / content | "
          "read vs per-file |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for x in r["rows"]:
        print(f"| {x['method']} | {x['write_s']:.2f} | {x['write_and_flush_s']:.2f} | "
              f"{x['read_all_s']:.2f} | {x['read_10pct_s']:.2f} | {x['bytes_vs_content']:.3f} | "
              f"{files['read_all_s'] / x['read_all_s']:.2f}x |")
