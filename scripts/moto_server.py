"""The moto server, with DynamoDB requests serialised.

moto 5.2's TransactWriteItems deep-copies the table as a rollback point
while other request threads may be writing to it, and then fails with
"dictionary changed size during iteration" (an HTTP 500). Real DynamoDB has
no such race, so the emulator must not invent one: every DynamoDB request
holds one lock. SQS and the rest stay concurrent (long polls must not block).
"""

import sys
import threading

from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialised(self):
    with _lock:
        return _call_action(self)


DynamoHandler.call_action = _serialised

if __name__ == "__main__":
    sys.exit(main())
