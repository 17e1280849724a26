"""`tfp-distill data-service`: one tf.data service dispatcher or worker, for
`tfp-distill distill --data-service` (docs/guide/distributed.md)."""

from tfp_distill.cli import _common

__all__ = ["add_parser", "run"]


def add_parser(commands):
  """Adds the subcommand and its flags to `commands` (`_common.Commands`)."""
  service = commands.add_parser(
      "data-service", help="run a tf.data service dispatcher or worker (for --data-service)",
      description="Starts one tf.data service server and serves until killed. A "
                  "dispatcher coordinates; workers compute the teacher's outputs for "
                  "`tfp-distill distill --data-service HOST:PORT`. See "
                  "docs/guide/distributed.md.")
  service.add_argument("role", choices=("dispatcher", "worker"))
  service.add_argument("--port", type=_common.positive_int, required=True,
                       help="port this server listens on")
  service.add_argument("--dispatcher", default=None, metavar="HOST:PORT",
                       help="worker only: the dispatcher's address")
  service.add_argument("--worker-address", default=None, metavar="HOST:PORT",
                       help="worker only: the address the dispatcher reaches this worker "
                            "at (default localhost:PORT; set it on multi-host setups)")
  service.add_argument("--work-dir", default=None,
                       help="dispatcher only: journal folder; with it the dispatcher runs "
                            "in fault-tolerant mode and a restarted dispatcher resumes")
  service.set_defaults(run=run)
  return service


def run(args):
  """Runs `tfp-distill data-service` with the parsed `args`; returns the exit status."""
  import tensorflow as tf
  service = tf.data.experimental.service
  if args.role == "dispatcher":
    if args.dispatcher or args.worker_address:
      raise SystemExit("tfp-distill data-service: --dispatcher and --worker-address are "
                       "for workers.")
    server = service.DispatchServer(service.DispatcherConfig(
        port=args.port, work_dir=args.work_dir,
        fault_tolerant_mode=args.work_dir is not None))
  else:
    if not args.dispatcher:
      raise SystemExit("tfp-distill data-service: a worker needs --dispatcher HOST:PORT.")
    if args.work_dir:
      raise SystemExit("tfp-distill data-service: --work-dir is for the dispatcher.")
    server = service.WorkerServer(service.WorkerConfig(
        dispatcher_address=args.dispatcher.replace("grpc://", ""), port=args.port,
        worker_address=args.worker_address or f"localhost:{args.port}"))
  print(f"tf.data service {args.role} serving on port {args.port}", flush=True)
  server.join()
  return 0
