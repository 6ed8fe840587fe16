"""moto's S3 server, with S3's conditional PUT made atomic.

S3 decides `If-None-Match: *` (create only if absent) and `If-Match` atomically: of
two racing creates of one key exactly one succeeds. moto's server checks the
condition and then writes, on a thread per request, so two racing creates can both
succeed -- a stand-in that breaks the very contract the object-storage backend is
built on (durable-object's commits are create-only log objects). This launcher holds
one lock across moto's PutObject so the stand-in keeps S3's contract; everything else
is moto unchanged. durable-object/tests/object.rs races creates to prove it; the
server switches threads every 0.1 ms (Python's default is 5 ms) so that such a race
shows in that test within a few dozen rounds (it did, on plain moto) instead of rarely.

Run by scripts/services.sh with moto's own arguments (-H host -p port).
"""

import sys
import threading

from moto.s3.responses import S3Response
from moto.server import main

_put_lock = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self):  # type: ignore[no-untyped-def]
    with _put_lock:
        return _put_object(self)


S3Response.put_object = _atomic_put_object
sys.setswitchinterval(1e-4)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
