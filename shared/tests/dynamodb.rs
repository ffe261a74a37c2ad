//! The DynamoDB store against the AWS emulator (`AWS_ENDPOINT_URL`): the
//! same conformance suite as the embedded store, each check on a fresh table.

use std::sync::Arc;

use warren::adapters::dynamodb::{DynamoStore, provision_table};
use warren::ports::Store;
use warren::testing::aws::{emulator, unique_name};

#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_store_conforms() {
    let client = aws_sdk_dynamodb::Client::new(&emulator().await);
    warren::testing::store::run_all(|| {
        let client = client.clone();
        async move {
            let table = unique_name("t");
            let created = provision_table(&client, &table)
                .await
                .unwrap_or_else(|e| panic!("provisioning table {table}: {e}"));
            assert!(created, "a fresh table name is created");
            let again = provision_table(&client, &table)
                .await
                .unwrap_or_else(|e| panic!("provisioning table {table} again: {e}"));
            assert!(!again, "provisioning an existing table creates nothing");
            Arc::new(DynamoStore::new(client, table)) as Arc<dyn Store>
        }
    })
    .await;
}

/// Beyond the suite: a query that spans several 1 MB response pages follows
/// `LastEvaluatedKey`, on the table and on an index, with strict bounds.
#[tokio::test(flavor = "multi_thread")]
async fn query_follows_pages_past_one_megabyte() {
    use serde_json::json;
    use warren::ports::{Index, Item, Key, Query};

    let client = aws_sdk_dynamodb::Client::new(&emulator().await);
    let table = unique_name("t");
    provision_table(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("provisioning table {table}: {e}"));
    let store = DynamoStore::new(client, table);
    let items: Vec<Item> = (0..24)
        .map(|i| {
            let sk = format!("{i:02}");
            let attrs = json!({"pad": "p".repeat(100 * 1024)});
            let mut item = Item::new(
                Key::new("part", &sk),
                attrs.as_object().cloned().unwrap_or_default(),
            );
            item.indexes = vec![(Index::Gsi1, Key::new("ipart", &sk))];
            item
        })
        .collect();
    store.put_batch(items).await.expect("put_batch of 2.4 MB");
    let sks = |items: Vec<Item>| -> Vec<String> { items.into_iter().map(|i| i.key.sk).collect() };
    let want: Vec<String> = (0..24).map(|i| format!("{i:02}")).collect();
    let all = store
        .query(&Query::table("part", 100))
        .await
        .expect("table query");
    assert_eq!(sks(all), want, "every page of the partition");
    let bounded = Query {
        after: Some("02".into()),
        before: Some("21".into()),
        descending: true,
        ..Query::table("part", 15)
    };
    let got = store.query(&bounded).await.expect("bounded table query");
    let expected: Vec<String> = (6..=20).rev().map(|i| format!("{i:02}")).collect();
    assert_eq!(sks(got), expected, "strict bounds, descending, limited");
    let indexed = Query {
        after: Some("00".into()),
        ..Query::index(Index::Gsi1, "ipart", 100)
    };
    let got = store.query(&indexed).await.expect("index query");
    assert_eq!(
        sks(got),
        want[1..].to_vec(),
        "every page of the index partition"
    );
}

/// Beyond the suite: an item written by someone else that warren cannot
/// read (half an index key, a TTL that is not a number) is skipped and
/// reported by queries, which go on past it, and a get of it fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_item_is_skipped_by_queries_and_refused_by_get() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::json;
    use warren::ports::{Index, Item, Key, Query};

    let client = aws_sdk_dynamodb::Client::new(&emulator().await);
    let table = unique_name("t");
    provision_table(&client, &table)
        .await
        .unwrap_or_else(|e| panic!("provisioning table {table}: {e}"));
    let store = DynamoStore::new(client.clone(), table.clone());
    let good = |sk: &str| {
        let mut item = Item::new(
            Key::new("part", sk),
            json!({"v": sk}).as_object().cloned().unwrap_or_default(),
        );
        item.indexes = vec![(Index::Gsi1, Key::new("ipart", sk))];
        item
    };
    store
        .put_batch(vec![good("a"), good("c")])
        .await
        .expect("put the readable items");
    let s = |v: &str| AttributeValue::S(v.into());
    client
        .put_item()
        .table_name(&table)
        .item("pk", s("part"))
        .item("sk", s("b"))
        .item("gsi1pk", s("ipart"))
        .item("gsi1sk", s("b"))
        .item("ttl", s("not a number"))
        .send()
        .await
        .expect("write a damaged item");
    let sks = |items: Vec<Item>| -> Vec<String> { items.into_iter().map(|i| i.key.sk).collect() };
    let table_page = store
        .query(&Query::table("part", 2))
        .await
        .expect("table query");
    assert_eq!(
        sks(table_page),
        ["a", "c"],
        "the page is filled past the damaged item"
    );
    let index_page = store
        .query(&Query::index(Index::Gsi1, "ipart", 10))
        .await
        .expect("index query");
    assert_eq!(sks(index_page), ["a", "c"]);
    assert!(
        store.get(&Key::new("part", "b")).await.is_err(),
        "a get of it fails"
    );
}
