"""The moto server, with two of its races closed and two costs bounded.

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
- A Query walked and sorted every item of the table to pick out one
  partition, so it took time in proportion to the whole table: with a
  5,000-task run's 100,000 items each Query took about a second. A table now
  keeps each index's items by partition key (built on that index's first
  Query), refiled on every put, delete and update, the only ways moto changes
  items; a Query hands moto's own code just the queried partition's items, so
  its key condition, order, paging, counts, filter and projection are moto's.
- Two concurrent SQS ReceiveMessage calls can both see a message visible
  before either marks it received, and both get it: the scan-and-mark part
  of a receive holds a lock, while the long poll waits outside it (so sends
  and other receives go on).
- A receive read the queue's retention period once per message it looked
  at, each time building all the queue's attributes, whose approximate
  counts walk every message: a receive took time in the square of the
  queue's length (a 5,000-task fault run fell to about 12 tasks a minute,
  moto at a full core). It now reads the one attribute. A send did the
  same once per message, to read one setting: it now leaves the counts out.
"""

import sys
import threading
import time

import copy
import inspect
import types
import weakref

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.sqs.models import Queue, SQSBackend
from moto.core.utils import unix_time

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


class _Partitions:
    """One index's items of one table, by partition key value(s)."""

    def __init__(self, table, names):
        self.names = names
        self.source = table.items
        self.members = {}  # partition key -> {table key -> item}
        self.filed = {}  # table key -> the partition key it is filed under
        for key, item in _stored_items(table):
            self.file(key, item)

    def file(self, key, item):
        try:
            partition = tuple(item.attrs[name] for name in self.names)
            members = self.members.setdefault(partition, {})
        except (KeyError, TypeError):
            # Not in the index (sparse), or a value no key condition can equal.
            return
        members[key] = item
        self.filed[key] = partition

    def refile(self, key, item):
        partition = self.filed.pop(key, None)
        if partition is not None:
            members = self.members[partition]
            del members[key]
            if not members:
                del self.members[partition]
        if item is not None:
            self.file(key, item)


# Built for an index on its first Query, so unqueried indexes cost nothing.
_partitions_of = weakref.WeakKeyDictionary()  # table -> {index name -> _Partitions}


def _stored_items(table):
    for hash_value, stored in list(table.items.items()):
        if table.range_key_attr:
            for range_value, item in stored.items():
                yield (hash_value, range_value), item
        else:
            yield (hash_value, None), stored


def _stored_item(table, hash_value, range_value):
    stored = table.items.get(hash_value)  # .get: items is a defaultdict
    if table.range_key_attr and stored is not None:
        return stored.get(range_value)
    return stored


def _refile(table, hash_value, range_value):
    indexes = _partitions_of.get(table)
    if not indexes:
        return
    if (table.range_key_attr is None) != (range_value is None):
        # A write moto stores under no single item key (e.g. it dropped a whole
        # hash key): rebuild on the next Query rather than guess.
        del _partitions_of[table]
        return
    item = _stored_item(table, hash_value, range_value)
    for partitions in indexes.values():
        partitions.refile((hash_value, range_value), item)


def _refile_key(table, key):
    try:
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = None
        if table.range_key_attr is not None and table.range_key_attr in key:
            range_value = DynamoType(key[table.range_key_attr])
    except Exception:
        _partitions_of.pop(table, None)
        return
    _refile(table, hash_value, range_value)


# Every change moto makes to a table's items is one of these three; each
# refiles the item's key even if it raised part way.
_table_put_item = Table.put_item
_table_delete_item = Table.delete_item
_update_item = DynamoDBBackend.update_item


def _put_item(self, item_attrs, *args, **kwargs):
    try:
        return _table_put_item(self, item_attrs, *args, **kwargs)
    finally:
        if self in _partitions_of:
            _refile_key(self, item_attrs)


def _delete_item(self, hash_key, range_key, *args, **kwargs):
    try:
        return _table_delete_item(self, hash_key, range_key, *args, **kwargs)
    finally:
        _refile(self, hash_key, range_key)


def _update(self, table_name, key, *args, **kwargs):
    # Updates change the stored item in place, index keys included.
    try:
        return _update_item(self, table_name, key, *args, **kwargs)
    finally:
        table = self.tables.get(table_name)
        if table is not None and table in _partitions_of:
            _refile_key(table, key)


Table.put_item = _put_item
Table.delete_item = _delete_item
DynamoDBBackend.update_item = _update

_table_query = Table.query
_query_signature = inspect.signature(_table_query)
_table_all_items = Table.all_items
_query_view = threading.local()


def _partition_items(table, arguments):
    """The items of the partition a Query names, or None to search them all."""
    index_name = arguments.get("index_name")
    if not index_name:
        hash_key = arguments.get("hash_key")
        if hash_key is None:
            return None
        try:
            stored = table.items.get(hash_key)
        except TypeError:
            return None
        if stored is None:
            return []
        return list(stored.values()) if table.range_key_attr else [stored]
    index = {i.name: i for i in table.all_indexes()}.get(index_name)
    if index is None:
        return None
    names = tuple(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
    conditions = dict(arguments.get("hash_key_conditions") or ())
    if not names or any(name not in conditions for name in names):
        return None
    indexes = _partitions_of.setdefault(table, {})
    partitions = indexes.get(index_name)
    if partitions is None or partitions.names != names or partitions.source is not table.items:
        partitions = indexes[index_name] = _Partitions(table, names)
    try:
        members = partitions.members.get(tuple(conditions[name] for name in names))
    except TypeError:
        return None
    return list(members.values()) if members else []


def _all_items(self):
    view = getattr(_query_view, "view", None)
    if view is None or view[0] is not self:
        return _table_all_items(self)
    # moto's own order for its whole-table list, so ties sort as they did.
    return sorted(
        view[1],
        key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key,
    )


def _query(self, *args, **kwargs):
    # moto's Query picks its partition out of all_items(): hand it only the
    # partition (a superset of what it keeps), and let it do everything else.
    items = _partition_items(self, _query_signature.bind(self, *args, **kwargs).arguments)
    if items is None:
        return _table_query(self, *args, **kwargs)
    _query_view.view = (self, items)
    try:
        return _table_query(self, *args, **kwargs)
    finally:
        _query_view.view = None


Table.all_items = _all_items
Table.query = _query

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


def _within_retention(self, queue_name, message):
    # moto read the retention period through get_queue_attributes, which
    # builds every attribute of the queue, its approximate counts included
    # (each a walk over all its messages): once per message a receive looks
    # at, so a receive took time in the square of the queue's length.
    retention = self.get_queue(queue_name).message_retention_period
    return retention + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _within_retention

# A send reads one setting (ContentBasedDeduplication) through the same
# all-attributes dict: while a thread sends, the three approximate counts it
# builds are left at 0 (a send never answers them), so a send no longer
# walks the queue three times. Other threads' GetQueueAttributes still count.
_sending = threading.local()
for _name in (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
):
    _count = getattr(Queue, _name).fget
    setattr(Queue, _name, property(lambda q, count=_count: 0 if getattr(_sending, "on", False) else count(q)))

_send_message = SQSBackend.send_message


def _send(self, *args, **kwargs):
    _sending.on = True
    try:
        return _send_message(self, *args, **kwargs)
    finally:
        _sending.on = False


SQSBackend.send_message = _send

if __name__ == "__main__":
    sys.exit(main())
