#!/usr/bin/env bash
# Provision what warren needs on LocalStack, idempotently (whatever exists is
# kept): the DynamoDB table (pk/sk, six GSIs gsi1..gsi6, TTL on `ttl`), the
# task queue with its dead-letter queue and redrive policy, and the topic
# ingress queue with its own dead-letter queue.
#
# LocalStack runs it when ready (mounted into /etc/localstack/init/ready.d).
# The CLI is overridable, so the same script runs against any endpoint:
#   AWS_CLI="aws --endpoint-url $AWS_ENDPOINT_URL" localstack/init/ready.d/10-provision.sh
# Names: WARREN_TABLE (warren), WARREN_TASK_QUEUE (warren-tasks),
# WARREN_TOPIC_QUEUE (warren-topics); dead-letter queues are `<name>-dlq`.
set -euo pipefail
shopt -s inherit_errexit

read -r -a AWS <<<"${AWS_CLI:-awslocal}"
REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"
TABLE="${WARREN_TABLE:-warren}"
TASK_QUEUE="${WARREN_TASK_QUEUE:-warren-tasks}"
TOPIC_QUEUE="${WARREN_TOPIC_QUEUE:-warren-topics}"
GSI_COUNT=6
# At least the worker's timeout (900 s in template.yaml); 14 days' retention;
# a message received this many times goes to the dead-letter queue.
VISIBILITY=960
RETENTION=1209600
MAX_RECEIVES=5

aws() { AWS_PAGER="" "${AWS[@]}" --region "$REGION" "$@"; }

ensure_table() {
  if aws dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
    echo "table $TABLE: exists"
  else
    local attrs="AttributeName=pk,AttributeType=S AttributeName=sk,AttributeType=S"
    local gsis="" i
    for i in $(seq 1 "$GSI_COUNT"); do
      attrs="$attrs AttributeName=gsi${i}pk,AttributeType=S AttributeName=gsi${i}sk,AttributeType=S"
      gsis="$gsis${gsis:+,}{\"IndexName\":\"gsi$i\",\"KeySchema\":[{\"AttributeName\":\"gsi${i}pk\",\"KeyType\":\"HASH\"},{\"AttributeName\":\"gsi${i}sk\",\"KeyType\":\"RANGE\"}],\"Projection\":{\"ProjectionType\":\"ALL\"}}"
    done
    # shellcheck disable=SC2086 # attrs is a list of shorthand arguments
    aws dynamodb create-table --table-name "$TABLE" \
      --billing-mode PAY_PER_REQUEST \
      --attribute-definitions $attrs \
      --key-schema AttributeName=pk,KeyType=HASH AttributeName=sk,KeyType=RANGE \
      --global-secondary-indexes "[$gsis]" >/dev/null
    aws dynamodb wait table-exists --table-name "$TABLE"
    echo "table $TABLE: created"
  fi
  local ttl
  ttl=$(aws dynamodb describe-time-to-live --table-name "$TABLE" \
    --query 'TimeToLiveDescription.[TimeToLiveStatus,AttributeName]' --output text)
  case "$ttl" in
    ENABLED*ttl | ENABLING*ttl) echo "table $TABLE: TTL on ttl" ;;
    *)
      aws dynamodb update-time-to-live --table-name "$TABLE" \
        --time-to-live-specification Enabled=true,AttributeName=ttl >/dev/null
      echo "table $TABLE: TTL enabled on ttl"
      ;;
  esac
}

# ensure_queue NAME ATTRIBUTES_JSON: create NAME, or set ATTRIBUTES on the
# existing queue (the same values every run, so this converges). Leaves the
# queue's URL in QUEUE_URL.
ensure_queue() {
  local name=$1 attributes=$2
  if QUEUE_URL=$(aws sqs get-queue-url --queue-name "$name" --query QueueUrl --output text 2>/dev/null); then
    aws sqs set-queue-attributes --queue-url "$QUEUE_URL" --attributes "$attributes" >/dev/null
    echo "queue $name: exists"
  else
    QUEUE_URL=$(aws sqs create-queue --queue-name "$name" --attributes "$attributes" \
      --query QueueUrl --output text)
    echo "queue $name: created"
  fi
}

# ensure_queue_pair NAME: NAME-dlq, then NAME redriving into it.
ensure_queue_pair() {
  local name=$1 dlq_arn redrive
  ensure_queue "$name-dlq" \
    "{\"MessageRetentionPeriod\":\"$RETENTION\",\"SqsManagedSseEnabled\":\"true\"}"
  dlq_arn=$(aws sqs get-queue-attributes --queue-url "$QUEUE_URL" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)
  redrive="{\\\"deadLetterTargetArn\\\":\\\"$dlq_arn\\\",\\\"maxReceiveCount\\\":\\\"$MAX_RECEIVES\\\"}"
  ensure_queue "$name" \
    "{\"VisibilityTimeout\":\"$VISIBILITY\",\"MessageRetentionPeriod\":\"$RETENTION\",\"SqsManagedSseEnabled\":\"true\",\"RedrivePolicy\":\"$redrive\"}"
}

ensure_table
ensure_queue_pair "$TASK_QUEUE"
ensure_queue_pair "$TOPIC_QUEUE"
echo "warren: resources ready (table $TABLE, queues $TASK_QUEUE, $TOPIC_QUEUE)"
