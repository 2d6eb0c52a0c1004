#!/bin/sh
# Eight shards with GNU parallel (on one machine, or across hosts with --sshlogin):
cachefill flush plans/fill.toml --yes &&
  parallel -j 8 cachefill run plans/fill.toml --shard {}/8 --no-flush --yes --quiet -o shard{}.json ::: $(seq 0 7) &&
  cachefill merge shard*.json -o fill.result.json
