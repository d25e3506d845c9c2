#!/usr/bin/env bash
# The research-question study in the background: resumes where it stopped, writes docs/RESULTS.md as each
# run finishes. Arguments go to benchmarks/replicate.py (e.g. --parts rq1-objectives). Log: runs/study/replicate.log
# STUDY_WORKERS=2 runs two workers that share the cells (each claims the next free one), each with
# cores / workers threads: on 2 cores, two 1-thread runs finish more cells per hour than one 2-thread run.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/study
python="${PYTHON:-.venv/bin/python}"
workers="${STUDY_WORKERS:-1}"
threads=$(( $(nproc) / workers > 0 ? $(nproc) / workers : 1 ))
: > runs/study/replicate.pid
for worker in $(seq 1 "$workers"); do
  OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
    nohup setsid "$python" benchmarks/replicate.py "$@" >>runs/study/replicate.log 2>&1 &
  echo "$!" >> runs/study/replicate.pid
  sleep 5  # the first worker claims its cell before the next looks
done
echo "study running in the background ($workers worker(s) of $threads thread(s), process groups $(tr '\n' ' ' < runs/study/replicate.pid)); log: runs/study/replicate.log"
