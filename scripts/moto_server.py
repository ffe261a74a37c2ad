"""The moto server, with two of its races closed.

Real AWS has neither, so the emulator must not invent them:
- moto 5.2's TransactWriteItems deep-copies the table as a rollback point
  while other request threads may be writing to it, and then fails with
  "dictionary changed size during iteration" (an HTTP 500): every DynamoDB
  request holds one lock.
- Two concurrent SQS ReceiveMessage calls can both see a message visible
  before either marks it received, and both get it: the scan-and-mark part
  of a receive holds a lock, while the long poll waits outside it (so sends
  and other receives go on).
"""

import sys
import threading
import time

from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.sqs.models import SQSBackend

_dynamodb_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialised(self):
    with _dynamodb_lock:
        return _call_action(self)


DynamoHandler.call_action = _serialised

_receive_lock = threading.Lock()
_receive_message = SQSBackend.receive_message


def _receive(self, queue_name, count, wait_seconds_timeout, visibility_timeout, *args, **kwargs):
    deadline = time.monotonic() + (wait_seconds_timeout or 0)
    while True:
        with _receive_lock:
            got = _receive_message(self, queue_name, count, 0, visibility_timeout, *args, **kwargs)
        left = deadline - time.monotonic()
        if got or left <= 0:
            return got
        self.get_queue(queue_name).wait_for_messages(min(left, 1.0))


SQSBackend.receive_message = _receive

if __name__ == "__main__":
    sys.exit(main())
