use futures_util::StreamExt;
use lapin::{options::*, types::FieldTable, BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::time::Instant;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let conn = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let p = "probe.x.";
    let topic = format!("{p}calls");
    let grp = format!("{p}group");
    ch.exchange_declare(topic.clone().into(), ExchangeKind::Topic, ExchangeDeclareOptions { durable: true, ..Default::default() }, FieldTable::default()).await?;
    ch.exchange_declare(grp.clone().into(), ExchangeKind::Fanout, ExchangeDeclareOptions { durable: true, auto_delete: true, ..Default::default() }, FieldTable::default()).await?;
    ch.exchange_bind(grp.clone().into(), topic.clone().into(), "r.g".into(), ExchangeBindOptions::default(), FieldTable::default()).await?;
    let pubm = |key: &'static str| {
        let ch = ch.clone();
        let topic = topic.clone();
        async move {
            let c = ch.basic_publish(topic.into(), key.into(), BasicPublishOptions { mandatory: true, ..Default::default() }, b"x", BasicProperties::default()).await.unwrap().await.unwrap();
            c.take_message().is_some()
        }
    };
    println!("e2e to empty group returned: {}", pubm("r.g").await);
    let q = format!("{p}q");
    ch.queue_declare(q.clone().into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default()).await?;
    ch.queue_bind(q.clone().into(), grp.clone().into(), "".into(), QueueBindOptions::default(), FieldTable::default()).await?;
    println!("e2e to member group returned: {}", pubm("r.g").await);
    // latency: transient vs persistent, with consumer
    let cch = conn.create_channel().await?;
    let mut cons = cch.basic_consume(q.clone().into(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default()).await?;
    for mode in [1u8, 2u8] {
        let mut v = vec![];
        for _ in 0..500 {
            let t = Instant::now();
            let c = ch.basic_publish(topic.clone().into(), "r.g".into(), BasicPublishOptions { mandatory: true, ..Default::default() }, b"x", BasicProperties::default().with_delivery_mode(mode)).await?;
            let _ = cons.next().await;
            let d = t.elapsed();
            c.await?;
            let d2 = t.elapsed();
            v.push((d.as_micros(), d2.as_micros()));
        }
        let mut a: Vec<_> = v.iter().map(|x| x.0).collect();
        let mut b: Vec<_> = v.iter().map(|x| x.1).collect();
        a.sort();
        b.sort();
        println!("mode {mode}: deliver p50 {} p99 {}  confirm p50 {} p99 {}", a[250], a[495], b[250], b[495]);
    }
    // unbind last queue -> auto-delete group, e2e gone
    ch.queue_unbind(q.clone().into(), grp.clone().into(), "".into(), FieldTable::default()).await?;
    println!("after unbind returned: {}", pubm("r.g").await);
    let ch2 = conn.create_channel().await?;
    let r = ch2.exchange_declare(grp.clone().into(), ExchangeKind::Fanout, ExchangeDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await;
    println!("group exists after unbind: {:?}", r.is_ok());
    let ch3 = conn.create_channel().await?;
    let r = ch3.queue_unbind(q.clone().into(), grp.clone().into(), "".into(), FieldTable::default()).await;
    println!("unbind from missing exchange: {:?}", r.err().map(|e| e.to_string()));
    let ch4 = conn.create_channel().await?;
    let r = ch4.exchange_delete(grp.clone().into(), ExchangeDeleteOptions::default()).await;
    println!("delete missing exchange: {:?}", r.err().map(|e| e.to_string()));
    let ch5 = conn.create_channel().await?;
    let r = ch5.queue_delete(format!("{p}nope").into(), QueueDeleteOptions::default()).await;
    println!("delete missing queue: {:?}", r.err().map(|e| e.to_string()));
    ch5.queue_delete(q.into(), QueueDeleteOptions::default()).await?;
    ch5.exchange_delete(topic.into(), ExchangeDeleteOptions::default()).await?;
    Ok(())
}
