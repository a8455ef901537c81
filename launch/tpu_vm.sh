#!/usr/bin/env bash
# Run a t1jax command on every host of a Cloud TPU VM or pod slice.
#
#   launch/tpu_vm.sh create NAME ZONE ACCELERATOR [VERSION]   # e.g. my-tpu us-central2-b v4-16
#   launch/tpu_vm.sh setup  NAME ZONE                          # copy this checkout, install t1jax[tpu]
#   launch/tpu_vm.sh run    NAME ZONE t1jax sft --config configs/x.py --config.mesh.fsdp=-1
#   launch/tpu_vm.sh delete NAME ZONE
#
# Every host runs the same command; t1jax starts jax.distributed itself on multi-host slices
# (distributed.mode="auto"), and each host reads its own shard of the data. Put run.workdir on
# a bucket-backed or shared path when several hosts write checkpoints (e.g. gs://... for Orbax).
set -euo pipefail
action=${1:?usage: launch/tpu_vm.sh create|setup|run|delete NAME ZONE ...}
name=${2:?TPU name}
zone=${3:?zone}
shift 3
on_all() { gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "$1"; }
case "$action" in
  create)
    accelerator=${1:?accelerator type, e.g. v4-16}
    version=${2:-tpu-ubuntu2204-base}
    gcloud compute tpus tpu-vm create "$name" --zone "$zone" --accelerator-type "$accelerator" --version "$version" ;;
  setup)
    tar czf /tmp/t1jax-src.tgz --exclude .venv --exclude runs --exclude .git .
    gcloud compute tpus tpu-vm scp /tmp/t1jax-src.tgz "$name":~/ --zone "$zone" --worker=all
    on_all "mkdir -p t1jax && tar xzf t1jax-src.tgz -C t1jax && cd t1jax && python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[tpu]'" ;;
  run)
    on_all "cd t1jax && . .venv/bin/activate && $(printf '%q ' "$@")" ;;
  delete)
    gcloud compute tpus tpu-vm delete "$name" --zone "$zone" --quiet ;;
  *)
    echo "unknown action: $action" >&2; exit 2 ;;
esac
