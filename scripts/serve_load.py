"""Serving under load: an exported student's `serving_default` called from N threads.

```none
SavedModel ──tf.saved_model.load──► serving_default(x [batch, ...]) ──► {prediction, ...}
                                          ▲  ▲  ▲
  thread i = 0..N-1: warm-up call ────────┘  │  │     (untimed, before the start barrier)
                     probe request ──────────┘  │     (all threads at once, under load;
                                                │      compared bit for bit with a
                                                │      single-threaded reference)
                     requests of its own ───────┘     (timed, for --seconds; inputs
                     (seeded by thread index)          drawn from seed + thread index)
```

For each thread count N the script reports the p50 and p99 latency of one request (ms),
requests/s and examples/s of all threads together (successful requests over the wall time
from the start barrier to the last thread's end), the errors (there should be none), and
whether every thread's probe output equals the single-threaded reference bit for bit.
Warm-up (the first calls, which optimise and initialise the graph) is never timed.

By default it builds and exports two small *untrained* students (weights at their seeded
initialisation: the latencies are those of a trained student of the same size, the
outputs mean nothing): the small CNN with a Dirichlet head (Fashion-MNIST-sized images,
10 classes) and a regression MLP with a full-covariance Gaussian head. `--saved-model DIR`
serves an exported student instead (`td.export_saved_model`, or any SavedModel whose
`serving_default` takes one input of fixed example shape). Serving uses plain TensorFlow.

Usage:
  python scripts/serve_load.py                                  # threads 1,4,16; 10 s each
  python scripts/serve_load.py --threads 1,2,8 --seconds 5 --batch-size 64 --json l.json
  python scripts/serve_load.py --saved-model exported/student   # your exported student
  python scripts/serve_load.py --smoke                          # seconds; what tests run
"""

import argparse
import concurrent.futures
import json
import math
import os
import sys
import tempfile
import threading
import time

import numpy as np
import tensorflow as tf

import tfp_distill as td
from tfp_distill.experiments import bench

_PROBE_STREAM = 0   # the probe request's seed is [seed, 0]; thread i draws from [seed, i + 1]
_REQUESTS_PER_THREAD = 4   # distinct request batches each thread cycles through


def _students(smoke):
  """{name: (student, family)}: the untrained students served by default."""
  dirichlet, mvn = td.heads.DirichletHead, td.heads.MultivariateNormalTriLHead
  if smoke:
    cnn = td.models.small_cnn(output_size=dirichlet.params_size(10), head=dirichlet(10),
                              filters=(4,), dense_units=8, seed=0)
    mlp = td.models.mlp((8,), [8], mvn.params_size(2), head=mvn(2), seed=1)
  else:
    cnn = td.models.small_cnn(output_size=dirichlet.params_size(10), head=dirichlet(10),
                              seed=0)
    mlp = td.models.mlp((8,), [75], mvn.params_size(2), head=mvn(2), seed=1)
  return {"small_cnn_dirichlet": (cnn, td.families.CategoricalLogits(10)),
          "mlp_full_covariance": (mlp, td.families.HeteroscedasticNormal())}


def _signature(path):
  """The loaded `serving_default`, its input's name and TensorSpec.

  Raises:
    SystemExit: no serving_default, more than one input, or an unknown example shape.
  """
  loaded = tf.saved_model.load(path)
  signatures = dict(getattr(loaded, "signatures", {}) or {})
  if "serving_default" not in signatures:
    raise SystemExit(f"{path}: no serving_default signature (it has: "
                     f"{', '.join(sorted(signatures)) or 'none'}).")
  fn = signatures["serving_default"]
  inputs = fn.structured_input_signature[1]
  if len(inputs) != 1:
    raise SystemExit(f"{path}: serving_default takes {len(inputs)} inputs "
                     f"({', '.join(sorted(inputs))}); serve_load sends one.")
  name, spec = next(iter(inputs.items()))
  if spec.shape.rank is None or None in spec.shape.as_list()[1:]:
    raise SystemExit(f"{path}: input {name!r} has shape {spec.shape}; serve_load needs a "
                     "fixed example shape [batch, d1, ...].")
  # Keep the loaded object alive with the function (its variables live there).
  return loaded, fn, name, spec


def _requests(spec, batch_size, seed, stream, count):
  """`count` request batches [batch_size, ...] of spec's dtype, drawn from [seed, stream]."""
  rng = np.random.default_rng([seed, stream])
  shape = (batch_size,) + tuple(spec.shape.as_list()[1:])
  return [tf.constant(rng.uniform(size=shape).astype(spec.dtype.as_numpy_dtype))
          for _ in range(count)]


def _numpy(out):
  """The outputs as NumPy arrays (waits for them, as a server answering a request does)."""
  return {key: value.numpy() for key, value in out.items()}


def _identical(a, b):
  """Same keys, and every array the same dtype, shape and bytes."""
  return a.keys() == b.keys() and all(
      a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and
      a[k].tobytes() == b[k].tobytes() for k in a)


def _worker(fn, name, batches, probe, barrier, seconds):
  """One serving thread: warm-up, start barrier, the probe, then timed requests."""
  errors, first_error, probe_out = 0, None, None

  def fail(error):
    nonlocal errors, first_error
    errors += 1
    if first_error is None:
      first_error = f"{type(error).__name__}: {str(error).strip().splitlines()[0]}"

  try:
    _numpy(fn(**{name: batches[0]}))   # warm-up in this thread: untimed
  except Exception as error:  # pylint: disable=broad-except
    fail(error)
  barrier.wait()
  start = time.perf_counter()
  deadline = start + seconds
  try:
    probe_out = _numpy(fn(**{name: probe}))   # every thread at once, under load
  except Exception as error:  # pylint: disable=broad-except
    fail(error)
  latencies, i = [], 0
  while True:
    begin = time.perf_counter()
    if begin >= deadline:
      break
    try:
      _numpy(fn(**{name: batches[i % len(batches)]}))
      latencies.append(time.perf_counter() - begin)
    except Exception as error:  # pylint: disable=broad-except
      fail(error)
    i += 1
  return {"start": start, "end": time.perf_counter(), "latencies_s": latencies,
          "errors": errors, "first_error": first_error, "probe": probe_out}


def serve_under_load(fn, name, spec, threads, seconds, batch_size, seed):
  """Figures for one served signature and one thread count.

  Args:
    fn: the loaded `serving_default` ConcreteFunction.
    name: str, its input's name.
    spec: tf.TensorSpec of the input, [None, d1, ...].
    threads: int >= 1, serving threads.
    seconds: float > 0, how long each thread sends timed requests.
    batch_size: int >= 1, examples per request.
    seed: int; thread i's requests are drawn from [seed, i + 1], the probe from [seed, 0].

  Returns:
    dict: threads, requests, p50_ms, p99_ms, requests_per_s, examples_per_s, errors,
    first_error, identical_outputs (bool: every thread's probe output equals the
    single-threaded reference bit for bit), threads_with_identical_outputs.
  """
  probe = _requests(spec, batch_size, seed, _PROBE_STREAM, 1)[0]
  _numpy(fn(**{name: probe}))   # warm-up: the first call optimises the graph
  reference = _numpy(fn(**{name: probe}))
  pools = [_requests(spec, batch_size, seed, i + 1, _REQUESTS_PER_THREAD)
           for i in range(threads)]
  barrier = threading.Barrier(threads)
  with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
    futures = [pool.submit(_worker, fn, name, pools[i], probe, barrier, seconds)
               for i in range(threads)]
    runs = [f.result() for f in futures]
  latencies_ms = 1e3 * np.array([t for r in runs for t in r["latencies_s"]])
  wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
  same = [r["probe"] is not None and _identical(r["probe"], reference) for r in runs]
  requests = len(latencies_ms)
  p50, p99 = (np.percentile(latencies_ms, [50, 99]) if requests else (math.nan,) * 2)
  return {"threads": threads, "requests": requests, "p50_ms": float(p50),
          "p99_ms": float(p99), "requests_per_s": requests / wall,
          "examples_per_s": requests * batch_size / wall,
          "errors": sum(r["errors"] for r in runs),
          "first_error": next((r["first_error"] for r in runs if r["first_error"]), None),
          "identical_outputs": all(same), "threads_with_identical_outputs": sum(same)}


def format_markdown(result):
  """The figures as a Markdown table, with the machine, date and versions above it."""
  m, c = result["machine"], result["config"]
  lines = [f"Serving under load: {m['cpu']}, {m['cores']} cores"
           f"{', GPUs: ' + ', '.join(m['gpus']) if m['gpus'] else ''}; {m['date']}; "
           f"TensorFlow {m['tensorflow']}.",
           f"Batch of {c['batch_size']} examples per request, {c['seconds']:g} s per thread "
           f"count, seed {c['seed']}.", ""]
  if result["untrained"]:
    lines += ["The students are untrained (seeded initial weights): latency and throughput "
              "only, the outputs mean nothing.", ""]
  lines += ["| student | threads | requests | p50 ms | p99 ms | requests/s | examples/s | "
            "errors | identical outputs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
  for model, rows in result["results"].items():
    for r in rows:
      same = ("yes" if r["identical_outputs"] else
              f"NO ({r['threads_with_identical_outputs']} of {r['threads']} threads)")
      lines.append(f"| {model} | {r['threads']} | {r['requests']} | {r['p50_ms']:.2f} | "
                   f"{r['p99_ms']:.2f} | {r['requests_per_s']:.1f} | "
                   f"{r['examples_per_s']:.0f} | {r['errors']} | {same} |")
  errors = [(model, r["threads"], r["first_error"]) for model, rows in
            result["results"].items() for r in rows if r["first_error"]]
  for model, threads, error in errors:
    lines.append(f"\nFirst error ({model}, {threads} threads): {error}")
  return "\n".join(lines)


def _thread_counts(text):
  try:
    counts = [int(v) for v in text.split(",") if v.strip()]
  except ValueError:
    counts = []
  if not counts or min(counts) < 1:
    raise argparse.ArgumentTypeError(f"expected positive ints such as 1,4,16; got {text!r}")
  return counts


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--saved-model", action="append", metavar="DIR",
                      help="serve this exported student (repeatable); default: build and "
                           "export two small untrained students")
  parser.add_argument("--threads", type=_thread_counts, default=[1, 4, 16],
                      help="comma-separated thread counts (default 1,4,16)")
  parser.add_argument("--seconds", type=float, default=10.0,
                      help="timed seconds per thread count (default 10)")
  parser.add_argument("--batch-size", type=int, default=32,
                      help="examples per request (default 32)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", help="also write the figures to this file")
  parser.add_argument("--smoke", action="store_true",
                      help="threads 1,2; 0.5 s each; tiny students (for the tests)")
  args = parser.parse_args(argv)
  if args.smoke:
    args.threads, args.seconds = [1, 2], 0.5
  if args.seconds <= 0 or args.batch_size < 1:
    parser.error(f"need --seconds > 0 and --batch-size >= 1; got {args.seconds} and "
                 f"{args.batch_size}")

  with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
    if args.saved_model:
      paths = {path: path for path in args.saved_model}
    else:
      paths = {name: td.export_saved_model(student, family, os.path.join(tmp, name))
               for name, (student, family) in _students(args.smoke).items()}
    results = {}
    for model, path in paths.items():
      loaded, fn, name, spec = _signature(path)  # pylint: disable=unused-variable
      results[model] = [serve_under_load(fn, name, spec, n, args.seconds, args.batch_size,
                                         args.seed) for n in args.threads]
  result = {"machine": bench.machine(),
            "config": {"threads": args.threads, "seconds": args.seconds,
                       "batch_size": args.batch_size, "seed": args.seed,
                       "smoke": args.smoke, "saved_models": args.saved_model},
            "untrained": not args.saved_model, "results": results}
  print(format_markdown(result))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(result, f, indent=2)
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
