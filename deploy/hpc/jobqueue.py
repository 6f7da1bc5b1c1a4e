"""Start a Dask cluster on a SLURM queue for satchunk jobs (dask-jobqueue).

Run on a login node that the compute nodes can reach, in the same Python environment as
the workers (a shared .venv or the container image), with the store variables exported
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, SATCHUNK_STORE);
SLURM passes them on to the jobs. Needs ``pip install dask-jobqueue``.

    python deploy/hpc/jobqueue.py --jobs 8 --queue normal --account proj123
    # prints:  scheduler: tcp://10.1.2.3:34567
    satchunk predict --collection c --model ukis-csmask --scheduler tcp://10.1.2.3:34567

The scheduler lives in this process: leave it running while jobs use the cluster, Ctrl-C
cancels the SLURM jobs and stops it. Anyone on the cluster network can reach the
scheduler port: ``--tls`` uses the certificates of the Dask config (deploy/tls/dask-tls.yaml
via DASK_CONFIG, on a shared filesystem) for the scheduler, the workers and satchunk, and
prints a tls:// address.
The same settings as a Dask config file, for PBS/SGE/LSF too: deploy/hpc/jobqueue.yaml.
"""

from __future__ import annotations

import argparse
import signal
import threading


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs, one Dask worker each")
    p.add_argument("--cores", type=int, default=8, help="cores per job")
    p.add_argument("--memory", default="32GiB", help="memory per job")
    p.add_argument("--processes", type=int, default=1,
                   help="worker processes per job (threads = cores / processes)")
    p.add_argument("--walltime", default="02:00:00", help="job time limit, HH:MM:SS")
    p.add_argument("--queue", default=None, help="SLURM partition")
    p.add_argument("--account", default=None, help="SLURM account")
    p.add_argument("--interface", default=None,
                   help="network interface the scheduler and workers use (e.g. ib0, eth0)")
    p.add_argument("--local-directory", default="${TMPDIR:-/tmp}",
                   help="node-local scratch for worker spill files")
    p.add_argument("--gpus", type=int, default=0, help="GPUs per job (for `satchunk train`)")
    p.add_argument("--tls", action="store_true",
                   help="TLS with the CA/certificates/keys of the Dask config "
                        "(distributed.comm.tls, see deploy/tls/dask-tls.yaml)")
    p.add_argument("--wait", action="store_true", help="wait for all workers before printing")
    args = p.parse_args(argv)

    from dask_jobqueue import SLURMCluster
    from distributed.security import Security

    directives = ["--output=dask-worker-%j.out", "--error=dask-worker-%j.err"]
    if args.gpus:
        directives.append(f"--gres=gpu:{args.gpus}")
    cluster = SLURMCluster(
        cores=args.cores,
        processes=args.processes,
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        interface=args.interface,
        local_directory=args.local_directory,
        job_extra_directives=directives,
        # non-daemonic worker processes: `satchunk train --scheduler` can then run
        # DataLoader worker processes inside a Dask worker
        job_script_prologue=["export DASK_DISTRIBUTED__WORKER__DAEMON=False"],
        scheduler_options={"dashboard_address": ":8787"},
        security=Security() if args.tls else None,  # reads distributed.comm.tls.*
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cluster.scale(jobs=args.jobs)
        if args.wait:
            from distributed import Client

            with Client(cluster) as client:
                client.wait_for_workers(args.jobs * args.processes)
        print(f"scheduler: {cluster.scheduler_address}", flush=True)
        print(f"dashboard: {cluster.dashboard_link}", flush=True)
        print(f"use:       satchunk predict ... --scheduler {cluster.scheduler_address}",
              flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        cluster.close()  # cancels the SLURM jobs


if __name__ == "__main__":
    main()
