//! A Kafka-protocol broker for the tests: `tansu` (from `scripts/kafka-broker`, or
//! STROM_TANSU) on a free loopback port, with topics, a producer and a plain reader.

use super::free_port;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use strom::connectors::kafka::KafkaConfig;

/// The broker binary: STROM_TANSU (scripts/test sets it), else what
/// `scripts/kafka-broker` installs — once per test process, as tests run side by side.
pub fn tansu() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        if let Ok(path) = std::env::var("STROM_TANSU") {
            return path;
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("scripts/kafka-broker runs");
        assert!(out.status.success(), "scripts/kafka-broker failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
    .clone()
}

/// A tansu broker on a free loopback port, killed when dropped.
pub struct Broker {
    child: Child,
    pub address: String,
}

impl Broker {
    pub fn start() -> Broker {
        let tansu = tansu();
        let port = free_port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let child = Command::new(tansu)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/", "--silent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let start = Instant::now();
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "tansu does not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, address }
    }

    pub fn config(&self) -> KafkaConfig {
        KafkaConfig::new(&self.address)
            // Short group timeouts: joins otherwise wait out the broker's defaults.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .create()
            .unwrap();
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let results =
            futures::executor::block_on(admin.create_topics([&topic], &AdminOptions::new()))
                .unwrap();
        for r in results {
            r.unwrap();
        }
    }

    /// A producer that sends every record in a batch of its own: tansu 0.6 answers a
    /// "latest offset" request with one past the last *batch's base offset*, so with
    /// batches of many records a bounded read would stop after the first of each.
    pub fn producer(&self) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("batch.num.messages", "1")
            .create()
            .unwrap()
    }

    /// Writes `lines` round-robin over `partitions` partitions of `topic`.
    pub fn produce(&self, topic: &str, partitions: i32, lines: &[String]) {
        let producer = self.producer();
        for (i, line) in lines.iter().enumerate() {
            let record: BaseRecord<'_, (), String> = BaseRecord::to(topic)
                .payload(line)
                .partition(i as i32 % partitions);
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Every (key, value) of `topic`: until `expected` records arrived, then for another
    /// second, so that records beyond those are seen too.
    pub fn consume(&self, topic: &str, partitions: i32, expected: usize) -> Vec<(String, String)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .set("group.id", "test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&list).unwrap();
        let mut out = Vec::new();
        let start = Instant::now();
        let mut complete: Option<Instant> = None;
        while complete.is_none_or(|at| at.elapsed() < Duration::from_secs(1))
            && start.elapsed() < Duration::from_secs(60)
        {
            if complete.is_none() && out.len() >= expected {
                complete = Some(Instant::now());
            }
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                let text =
                    |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
                out.push((text(m.key()), text(m.payload())));
            }
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
