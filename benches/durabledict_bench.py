"""durabledict 0.9.4's Redis figures, for the table beside durable's own.

Run by benches/suite.rs (group `durabledict`) with the interpreter of target/bench/venv,
which scripts/bench.sh makes (`pip install durabledict==0.9.4 redis`). Prints one JSON
object of figures on stdout. Usage: durabledict_bench.py REDIS_URL [--quick]

- get_autosync_us: `d.get(key)` on a RedisDict with autosync (its default): one GET of the
  last_updated counter per read, then a dict lookup.
- sync_nochange_us: `d.sync()` with nothing changed: the same GET.
- sync_after_1_change_100k_ms: `d.sync()` after another instance changed one key of a
  100,000-key hash: durabledict reloads the whole hash (HGETALL) and decodes every value.
"""

import json
import statistics
import sys
import time
import uuid

from durabledict.encoding import JSONEncoding
from durabledict.redis import RedisDict
from redis import Redis


def per_op_us(rounds, ops, op):
    """Median over rounds of the mean time of one call, in microseconds."""
    results = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(ops):
            op()
        results.append((time.perf_counter() - started) / ops * 1e6)
    return statistics.median(results)


def main():
    url = sys.argv[1]
    quick = "--quick" in sys.argv
    rounds = 3 if quick else 7
    ops = 1_000 if quick else 10_000
    connection = Redis.from_url(url, decode_responses=True)
    namespace = "bench-durabledict-" + uuid.uuid4().hex[:12]
    counter = namespace + "last_updated"
    try:
        small = RedisDict(namespace + "-small", connection, encoding=JSONEncoding)
        small["flag"] = True
        get_us = per_op_us(rounds, ops, lambda: small.get("flag"))
        sync_us = per_op_us(rounds, ops, small.sync)

        # 100,000 keys written the way durabledict writes them (hash + counter), in pipelines.
        size = 100_000
        value = JSONEncoding.encode(True)
        for start in range(0, size, 10_000):
            with connection.pipeline() as pipe:
                pipe.incr(counter)
                pipe.hset(namespace, mapping={f"flag-{i:06}": value for i in range(start, start + 10_000)})
                pipe.execute()
        large = RedisDict(namespace, connection, autosync=False, encoding=JSONEncoding)
        assert len(large) == size, len(large)
        reloads = []
        for i in range(3 if quick else 5):
            # Another instance changes one key: a counter bump and one HSET, in one MULTI.
            with connection.pipeline() as pipe:
                pipe.incr(counter)
                pipe.hset(namespace, "flag-000000", JSONEncoding.encode(i))
                pipe.execute()
            started = time.perf_counter()
            large.sync()
            reloads.append((time.perf_counter() - started) * 1e3)
            assert large["flag-000000"] == i, "the change arrived"
    finally:
        connection.delete(namespace, counter, namespace + "-small", namespace + "-smalllast_updated")
    print(
        json.dumps(
            {
                "durabledict.get_autosync_us": get_us,
                "durabledict.sync_nochange_us": sync_us,
                "durabledict.sync_after_1_change_100k_ms": statistics.median(reloads),
            }
        )
    )


if __name__ == "__main__":
    main()
