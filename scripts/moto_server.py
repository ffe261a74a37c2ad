"""The moto server, with two of its races closed and one cost bounded.

Real AWS has none of them, so the emulator must not invent them:
- moto 5.2's TransactWriteItems deep-copies the table as a rollback point
  while other request threads may be writing to it, and then fails with
  "dictionary changed size during iteration" (an HTTP 500): every DynamoDB
  request holds one lock.
- That copy is of every table the transaction names, whole: a transaction
  took time in proportion to the table (a 5,000-task run grew moto to 8.6 GB
  and slowed to minutes per hundred tasks). The rollback point is now the
  items the transaction touches, copied before it and put back (or deleted)
  if it is cancelled; under the lock above nothing else can change them
  meanwhile.
- Two concurrent SQS ReceiveMessage calls can both see a message visible
  before either marks it received, and both get it: the scan-and-mark part
  of a receive holds a lock, while the long poll waits outside it (so sends
  and other receives go on).
"""

import sys
import threading
import time

import copy
import types

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.sqs.models import SQSBackend

_dynamodb_lock = threading.Lock()
_call_action = DynamoHandler.call_action


def _serialised(self):
    with _dynamodb_lock:
        return _call_action(self)


DynamoHandler.call_action = _serialised


def _deepcopy_but_tables(value, memo=None):
    # moto's own rollback copy of a whole table becomes the table itself
    # (its restore is then a no-op); the items are restored below instead.
    if isinstance(value, Table):
        return value
    return copy.deepcopy(value, memo)


dynamodb_models.copy = types.SimpleNamespace(deepcopy=_deepcopy_but_tables, copy=copy.copy)
_transact_write_items = DynamoDBBackend.transact_write_items


def _item_key(backend, op_type, op):
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def _transact(self, transact_items):
    before = []
    for entry in transact_items:
        try:
            op_type, op = next(iter(entry.items()))
            if op_type == "ConditionCheck":
                continue
            key = _item_key(self, op_type, op)
            item = self.get_item(op["TableName"], key)
        except Exception:
            # A malformed operation writes nothing: moto's own checks answer it.
            continue
        attrs = copy.deepcopy(item.to_json()["Attributes"]) if item else None
        before.append((op["TableName"], key, attrs))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table_name, key, attrs in reversed(before):
            if attrs is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attrs)
        raise


DynamoDBBackend.transact_write_items = _transact

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
