#!/usr/bin/env bash
# Run aibox's host setup as root: system part, then the per-user part for root.
set -euo pipefail
export PATH="/opt/aibox/venv/bin:/opt/aibox/bin:$PATH"
aibox setup --system
aibox setup
