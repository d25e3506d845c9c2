#!/usr/bin/env bash
# The research-question study in the background: resumes where it stopped, writes docs/RESULTS.md as each
# run finishes. Arguments go to benchmarks/replicate.py (e.g. --parts rq1-objectives). Log: runs/study/replicate.log
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p runs/study
python="${PYTHON:-.venv/bin/python}"
nohup setsid "$python" benchmarks/replicate.py "$@" >>runs/study/replicate.log 2>&1 &
echo "$!" > runs/study/replicate.pid
echo "study running in the background (pid $!, process group $!); log: runs/study/replicate.log"
