#!/usr/bin/env bash
# Run t1jax on every host of a Cloud TPU VM or pod slice, created directly or through a queued
# resource (the way to get capacity that is not free right now, and spot or reserved slices).
#
#   launch/tpu_vm.sh [--dry_run] ACTION NAME ZONE ...
#
#   create NAME ZONE ACCELERATOR [VERSION]          a TPU VM now (e.g. my-tpu us-central2-b v4-16)
#   queue  NAME ZONE ACCELERATOR [VERSION] [FLAG]   a queued resource for it (FLAG: --spot,
#                                                   --reserved or --best-effort), then waits
#                                                   until the slice is ACTIVE
#   status NAME ZONE                                the queued resource's state
#   setup  NAME ZONE                                copy this checkout to every host, install t1jax[tpu]
#   run    NAME ZONE t1jax rl --config ...          run the command on every host until it ends
#   start  NAME ZONE t1jax rl --config ...          start it detached on every host (an ssh drop does
#                                                   not stop it), then stream host 0's log
#   logs   NAME ZONE [WORKER]                       stream a host's log of the last start (default 0)
#   fetch  NAME ZONE PATH                           copy host 0's ~/t1jax/PATH to ./PATH
#   delete NAME ZONE                                delete the slice (and its queued resource)
#
# --dry_run prints the gcloud commands instead of running them. Every host runs the same command;
# t1jax starts jax.distributed itself on multi-host slices and each host reads its own shard of the
# data. With several hosts, run.workdir must be a directory every host sees (a shared file system
# mounted at the same path on every host); each host writes its own parts of a checkpoint.
set -euo pipefail
dry_run=0
if [[ ${1:-} == --dry_run ]]; then dry_run=1; shift; fi
usage="usage: launch/tpu_vm.sh [--dry_run] create|queue|status|setup|run|start|logs|fetch|delete NAME ZONE ..."
action=${1:?$usage}
name=${2:?$usage}
zone=${3:?$usage}
shift 3
log_dir=t1jax/logs

# Runs (or with --dry_run prints, shell-quoted) one command.
do_() {
  if ((dry_run)); then printf '%q ' "$@"; echo; else "$@"; fi
}
on_all() { do_ gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$1"; }
on_one() { do_ gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker="$1" --command "$2"; }
queue_state() {
  gcloud compute tpus queued-resources describe "$name" --zone "$zone" --format='value(state.state)'
}

case "$action" in
  create)
    accelerator=${1:?accelerator type, e.g. v4-16}
    version=${2:-tpu-ubuntu2204-base}
    do_ gcloud compute tpus tpu-vm create "$name" --zone "$zone" --accelerator-type "$accelerator" --version "$version" ;;
  queue)
    accelerator=${1:?accelerator type, e.g. v5p-64}
    version=${2:-tpu-ubuntu2204-base}
    extra=()
    if [[ -n ${3:-} ]]; then
      case "$3" in --spot|--reserved|--best-effort) extra=("$3") ;; *) echo "unknown flag $3 (use --spot, --reserved or --best-effort)" >&2; exit 2 ;; esac
    fi
    do_ gcloud compute tpus queued-resources create "$name" --node-id "$name" --zone "$zone" \
      --accelerator-type "$accelerator" --runtime-version "$version" "${extra[@]}"
    if ((dry_run)); then echo "# then wait until: gcloud compute tpus queued-resources describe $name --zone $zone shows ACTIVE"; exit 0; fi
    while true; do
      state=$(queue_state)
      echo "$(date +%H:%M:%S) $name: $state"
      case "$state" in
        ACTIVE) break ;;
        FAILED|SUSPENDED) echo "queued resource $name is $state" >&2; exit 1 ;;
      esac
      sleep 60
    done ;;
  status)
    do_ gcloud compute tpus queued-resources describe "$name" --zone "$zone" ;;
  setup)
    do_ tar czf /tmp/t1jax-src.tgz --exclude .venv --exclude runs --exclude .git .
    do_ gcloud compute tpus tpu-vm scp /tmp/t1jax-src.tgz "$name":~/ --zone "$zone" --worker=all
    on_all "mkdir -p t1jax && tar xzf t1jax-src.tgz -C t1jax && cd t1jax && python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[tpu]'" ;;
  run)
    (($# > 0)) || { echo "run needs a command, e.g. t1jax rl --config configs/x.py" >&2; exit 2; }
    on_all "cd ~/t1jax && . .venv/bin/activate && $(printf '%q ' "$@")" ;;
  start)
    (($# > 0)) || { echo "start needs a command, e.g. t1jax rl --config configs/x.py" >&2; exit 2; }
    log="$log_dir/$(date +%Y%m%d-%H%M%S).log"
    command=$(printf '%q ' "$@")
    # detached on every host; the log's name is kept in latest.log for `logs`
    on_all "mkdir -p ~/$log_dir && cd ~/t1jax && . .venv/bin/activate && echo ~/$log > ~/$log_dir/latest && nohup ${command% } > ~/$log 2>&1 < /dev/null &"
    on_one 0 "tail -n +1 -F \$(cat ~/$log_dir/latest)" ;;
  fetch)
    path=${1:?fetch needs a path under the checkout, e.g. runs/sweep/base/report/results.json}
    do_ mkdir -p "$(dirname "$path")"
    do_ gcloud compute tpus tpu-vm scp "$name:~/t1jax/$path" "$path" --zone "$zone" --worker=0 ;;
  logs)
    on_one "${1:-0}" "tail -n +1 -F \$(cat ~/$log_dir/latest)" ;;
  delete)
    if ((dry_run)) || gcloud compute tpus queued-resources describe "$name" --zone "$zone" >/dev/null 2>&1; then
      do_ gcloud compute tpus queued-resources delete "$name" --zone "$zone" --force --quiet
    else
      do_ gcloud compute tpus tpu-vm delete "$name" --zone "$zone" --quiet
    fi ;;
  *)
    echo "unknown action: $action ($usage)" >&2; exit 2 ;;
esac
