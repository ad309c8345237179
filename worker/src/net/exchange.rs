//! Channels between subtasks in different processes, over the `DataExchange` gRPC
//! service: one HTTP/2 stream per channel, with credit-based flow control.
//!
//! The consumer's worker expects each inbound channel before the producer may use it
//! ([`Exchange::expect`]), which gives the consuming task an ordinary [`InputChannel`]: a
//! bounded queue of `capacity` elements. The producer's worker opens the stream
//! ([`RemoteSender::open`]) and sends one frame per credit. The consumer grants `capacity`
//! credits at the start and one more for every element its task takes, so its queue never
//! holds more than `capacity` elements, a consumer that stops reading stops its producer,
//! and nothing in between holds more than a frame. Credits return in batches of half the
//! capacity.
//!
//! Records are encoded on the producer's task thread and decoded on the consumer's network
//! threads (tokio), so task threads only ever see typed batches.

use crate::graph::EdgeOps;
use crate::net::frame::{from_frame, to_frame};
use crate::runtime::envelope::Envelope;
use crate::runtime::input::InputChannel;
use crate::runtime::metrics::TaskTimes;
use crossbeam_channel::{Sender, TrySendError};
use futures::{Stream, StreamExt};
use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use strom_proto::data::data_exchange_client::DataExchangeClient;
use strom_proto::data::data_exchange_server::{DataExchange, DataExchangeServer};
use strom_proto::data::{ChannelId, Credit, DataFrame, data_frame::Kind};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// One channel: what one producer subtask sends one consumer subtask over one edge.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ChannelKey {
    pub job_id: String,
    pub attempt: u32,
    pub edge: u32,
    pub producer: u32,
    pub consumer: u32,
}

impl ChannelKey {
    fn to_wire(&self) -> ChannelId {
        ChannelId {
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            edge: self.edge,
            producer_subtask: self.producer,
            consumer_subtask: self.consumer,
        }
    }
}

impl From<ChannelId> for ChannelKey {
    fn from(id: ChannelId) -> Self {
        ChannelKey {
            job_id: id.job_id,
            attempt: id.attempt,
            edge: id.edge,
            producer: id.producer_subtask,
            consumer: id.consumer_subtask,
        }
    }
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the channel of edge {} from subtask {} to subtask {} of job {} (attempt {})",
            self.edge, self.producer, self.consumer, self.job_id, self.attempt
        )
    }
}

/// Counts the elements a task took from a remote channel, and wakes the stream that
/// returns them to the producer as credits once half the channel's capacity has been
/// taken. Granting in batches saves a message and a wake-up per element, and cannot stall
/// the producer: while it waits for credit, all `capacity` frames are queued or taken, so
/// the consumer keeps taking until a batch is due.
///
/// It also carries why the network side closed the channel, when that was the channel's
/// own fault (unreadable data, a producer past its credit), so the consuming task fails
/// with the cause rather than with "a connected task stopped".
pub(crate) struct CreditReturn {
    taken: AtomicU32,
    batch: u32,
    wake: Notify,
    closed_because: Mutex<Option<String>>,
}

impl CreditReturn {
    fn new(capacity: u32) -> Self {
        CreditReturn {
            taken: AtomicU32::new(0),
            batch: capacity.div_ceil(2),
            wake: Notify::new(),
            closed_because: Mutex::new(None),
        }
    }

    /// Why the network side closed the channel, if it failed there.
    pub(crate) fn closed_because(&self) -> Option<String> {
        self.closed_because
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn close_because(&self, why: String) {
        *self
            .closed_because
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// One element was taken (called on the consuming task's thread).
    pub(crate) fn returned(&self) {
        if self.taken.fetch_add(1, Ordering::AcqRel) + 1 >= self.batch {
            self.wake.notify_one();
        }
    }

    /// The elements taken since the last grant.
    fn take(&self) -> u32 {
        self.taken.swap(0, Ordering::AcqRel)
    }
}

/// A channel whose consumer is ready and whose producer has not connected yet.
struct Inbound {
    tx: Sender<Envelope>,
    edge: Arc<dyn EdgeOps>,
    credit: Arc<CreditReturn>,
    capacity: u32,
}

/// The consumer side of every remote channel into this process, and the gRPC service
/// through which producers reach them.
#[derive(Clone)]
pub(crate) struct Exchange {
    inner: Arc<Registry>,
}

struct Registry {
    expected: Mutex<HashMap<ChannelKey, Inbound>>,
    arrived: Notify,
    wait: Duration,
}

impl Exchange {
    /// `wait` bounds how long a producer's stream waits for its consumer to be expected
    /// (the producer's task may start before the consumer's is deployed).
    pub(crate) fn new(wait: Duration) -> Self {
        Exchange {
            inner: Arc::new(Registry {
                expected: Mutex::new(HashMap::new()),
                arrived: Notify::new(),
                wait,
            }),
        }
    }

    /// Makes the channel `key` ready for its producer, and returns the consuming task's
    /// end of it: a queue of at most `capacity` elements of `edge`'s type, on input
    /// `input` (0, or 1 for the second input of a two-input task).
    pub(crate) fn expect(
        &self,
        key: ChannelKey,
        edge: Arc<dyn EdgeOps>,
        input: u8,
        capacity: usize,
    ) -> InputChannel {
        let capacity = capacity.clamp(1, u32::MAX as usize);
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let credit = Arc::new(CreditReturn::new(capacity as u32));
        self.expected().insert(
            key,
            Inbound {
                tx,
                edge,
                credit: credit.clone(),
                capacity: capacity as u32,
            },
        );
        self.inner.arrived.notify_waiters();
        InputChannel {
            rx,
            input,
            finished: false,
            credit: Some(credit),
        }
    }

    /// The gRPC service to serve on this process's data address.
    pub(crate) fn service(&self) -> DataExchangeServer<Exchange> {
        DataExchangeServer::new(self.clone())
    }

    /// Serves the exchange on `listener` (this process's data address) until the future
    /// is dropped or the runtime stops.
    pub(crate) fn serve(
        &self,
        listener: tokio::net::TcpListener,
    ) -> impl std::future::Future<Output = Result<(), tonic::transport::Error>> + Send + 'static
    {
        use futures::StreamExt;
        // Credits are small messages back to the sender: no waiting to fill a packet.
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|stream| {
            let stream = stream?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(stream)
        });
        tonic::transport::Server::builder()
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .add_service(self.service())
            .serve_with_incoming(incoming)
    }

    fn expected(&self) -> MutexGuard<'_, HashMap<ChannelKey, Inbound>> {
        // The map stays consistent even if a holder panicked: every change is one call.
        self.inner
            .expected
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets the channels of a job attempt that no producer claimed (the attempt ended
    /// before they connected), so they do not pile up over restarts.
    pub(crate) fn forget_attempt(&self, job_id: &str, attempt: u32) {
        self.expected()
            .retain(|key, _| key.job_id != job_id || key.attempt != attempt);
    }

    /// Takes the expected channel `key`, waiting for it up to the configured time.
    async fn claim(&self, key: &ChannelKey) -> Result<Inbound, Status> {
        let deadline = tokio::time::Instant::now() + self.inner.wait;
        loop {
            // Registered before looking, so an `expect` in between is not missed.
            let arrived = self.inner.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(inbound) = self.expected().remove(key) {
                return Ok(inbound);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Err(Status::not_found(format!(
                    "no subtask in this worker expects {key} (waited {:?}); the job may \
                     have been cancelled or redeployed elsewhere",
                    self.inner.wait
                )));
            }
        }
    }
}

type CreditStream = Pin<Box<dyn Stream<Item = Result<Credit, Status>> + Send>>;

#[tonic::async_trait]
impl DataExchange for Exchange {
    type ChannelStream = CreditStream;

    async fn channel(
        &self,
        request: Request<Streaming<DataFrame>>,
    ) -> Result<Response<CreditStream>, Status> {
        let mut frames = request.into_inner();
        let key = match frames.message().await? {
            Some(DataFrame {
                kind: Some(Kind::Open(id)),
            }) => ChannelKey::from(id),
            _ => {
                return Err(Status::invalid_argument(
                    "the first frame of a channel must be 'open' with the channel's id",
                ));
            }
        };
        let inbound = self.claim(&key).await?;
        let (credits, credit_stream) = mpsc::channel(2);
        // Room for the first grant is certain: the queue is new.
        let _ = credits.try_send(Ok(Credit {
            frames: inbound.capacity,
        }));
        tokio::spawn(receive(key, frames, inbound, credits));
        Ok(Response::new(Box::pin(ReceiverStream::new(credit_stream))))
    }
}

/// Moves one channel's frames into its queue, and credits back to the producer.
async fn receive(
    key: ChannelKey,
    mut frames: Streaming<DataFrame>,
    inbound: Inbound,
    credits: mpsc::Sender<Result<Credit, Status>>,
) {
    loop {
        tokio::select! {
            frame = frames.message() => {
                let frame = match frame {
                    Ok(Some(frame)) => frame,
                    // Ended or broken without `end_of_input`: dropping the queue's sender
                    // tells the consuming task that its producer failed.
                    Ok(None) => return,
                    Err(status) => {
                        tracing::warn!(channel = %key, error = %status, "data channel broke");
                        return;
                    }
                };
                let envelope = match from_frame(frame, inbound.edge.as_ref()) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::error!(channel = %key, error = %e, "unreadable data frame; closing the channel");
                        inbound.credit.close_because(format!("{key}: {e}"));
                        let _ = credits.send(Err(Status::invalid_argument(format!("{key}: {e}")))).await;
                        return;
                    }
                };
                let end = matches!(envelope, Envelope::EndOfInput);
                match inbound.tx.try_send(envelope) {
                    Ok(()) if end => return,
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        tracing::error!(channel = %key, "producer sent beyond its credit; closing the channel");
                        inbound.credit.close_because(format!("{key}: the producer sent beyond its credit"));
                        let _ = credits.send(Err(Status::resource_exhausted(format!("{key}: frame sent without credit")))).await;
                        return;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        let _ = credits.send(Err(Status::cancelled(format!("the consumer of {key} has stopped")))).await;
                        return;
                    }
                }
            }
            () = inbound.credit.wake.notified() => {
                let frames = inbound.credit.take();
                if frames > 0 && credits.send(Ok(Credit { frames })).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// HTTP/2 flow-control windows of the data plane. Credits bound what a channel has in
/// flight; HTTP/2's default window (64 KiB, about one batch) would bound it far below
/// that and make every channel wait a round trip per batch.
const STREAM_WINDOW: u32 = 8 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

/// The connection to the data plane of the worker at `address` (`host:port`), opened on
/// first use and shared by every channel to that worker; `runtime` drives it.
pub(crate) fn connect(
    runtime: &tokio::runtime::Handle,
    address: &str,
) -> Result<tonic::transport::Channel, String> {
    let _in_runtime = runtime.enter();
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map(|e| {
            e.tcp_nodelay(true)
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .connect_lazy()
        })
        .map_err(|e| format!("worker data address '{address}': {e}"))
}

/// Why a remote channel cannot take more.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ChannelError(pub String);

/// The producer side of one remote channel.
pub(crate) struct RemoteSender {
    key: ChannelKey,
    edge: Arc<dyn EdgeOps>,
    frames: mpsc::Sender<DataFrame>,
    /// How the stream ended: `Some(why)` if it failed. Sent once, when it ends.
    outcome: crossbeam_channel::Receiver<Option<String>>,
    closed: std::sync::OnceLock<ChannelError>,
}

impl RemoteSender {
    /// Opens the stream of `key` on `connection` (one HTTP/2 connection per consumer
    /// worker, shared by all its channels), driven by `runtime`.
    pub(crate) fn open(
        runtime: &tokio::runtime::Handle,
        connection: tonic::transport::Channel,
        key: ChannelKey,
        edge: Arc<dyn EdgeOps>,
    ) -> Self {
        // One frame may wait here for a credit; the producer blocks on the next.
        let (frames, queued) = mpsc::channel(1);
        let (ended, outcome) = crossbeam_channel::bounded(1);
        let stream_key = key.clone();
        runtime.spawn(async move {
            let result = send_stream(connection, stream_key, queued).await;
            let _ = ended.send(result.err());
        });
        RemoteSender {
            key,
            edge,
            frames,
            outcome,
            closed: std::sync::OnceLock::new(),
        }
    }

    /// Sends one element, blocking while the consumer has no room (backpressure, counted
    /// in `times`). For task threads only: it must not be called on the runtime's threads.
    pub(crate) fn send(&self, envelope: Envelope, times: &TaskTimes) -> Result<(), ChannelError> {
        let frame = to_frame(envelope, self.edge.as_ref())
            .map_err(|e| ChannelError(format!("{}: {e}", self.key)))?;
        match self.frames.try_send(frame) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(frame)) => {
                let blocked = std::time::Instant::now();
                let sent = self.frames.blocking_send(frame).map_err(|_| self.closed());
                times.add_backpressured(blocked.elapsed());
                sent
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(self.closed()),
        }
    }

    /// Why the channel took no more: the stream's failure, which it reports as it ends
    /// (the queue may close a moment before).
    fn closed(&self) -> ChannelError {
        self.closed
            .get_or_init(|| {
                ChannelError(match self.outcome.recv_timeout(Duration::from_secs(5)) {
                    Ok(Some(why)) => format!("{} failed: {why}", self.key),
                    _ => format!("{} was closed by its consumer", self.key),
                })
            })
            .clone()
    }
}

/// Runs one channel's stream: the `open` frame, then one queued frame per credit.
/// Returns why it failed, if it did.
async fn send_stream(
    connection: tonic::transport::Channel,
    key: ChannelKey,
    queued: mpsc::Receiver<DataFrame>,
) -> Result<(), String> {
    let credits = Arc::new(Semaphore::new(0));
    let open = DataFrame {
        kind: Some(Kind::Open(key.to_wire())),
    };
    let frames = futures::stream::unfold(
        (queued, credits.clone(), false),
        |(mut queued, credits, ended)| async move {
            if ended {
                return None;
            }
            // A credit first, then a frame: frames wait in the bounded queue, where they
            // block the producer, rather than in this stream.
            credits.acquire().await.ok()?.forget();
            let frame = queued.recv().await?;
            let end = matches!(frame.kind, Some(Kind::EndOfInput(_)));
            Some((frame, (queued, credits, end)))
        },
    );
    let outgoing = futures::stream::once(async move { open }).chain(frames);
    let result = async {
        let mut granted = DataExchangeClient::new(connection)
            .channel(outgoing)
            .await
            .map_err(|status| status.message().to_string())?
            .into_inner();
        while let Some(credit) = granted
            .message()
            .await
            .map_err(|status| status.message().to_string())?
        {
            credits.add_permits(credit.frames as usize);
        }
        Ok(())
    }
    .await;
    // Ends the outgoing stream if it still waits for a credit.
    credits.close();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::TypedEdge;
    use crate::record::{Batch, StreamRecord};
    use crate::runtime::envelope::downcast_batch;
    use crate::runtime::input::{InputGate, Polled};
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;
    use tokio::runtime::Runtime;

    fn runtime() -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    }

    /// Serves `exchange` on a free loopback port.
    fn serve(rt: &Runtime, exchange: &Exchange) -> SocketAddr {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let address = listener.local_addr().expect("bound");
        rt.spawn(exchange.serve(listener));
        address
    }

    fn connect(rt: &Runtime, address: SocketAddr) -> tonic::transport::Channel {
        super::connect(rt.handle(), &address.to_string()).expect("a valid address")
    }

    fn key(edge: u32) -> ChannelKey {
        ChannelKey {
            job_id: "job-1".into(),
            attempt: 0,
            edge,
            producer: 0,
            consumer: 1,
        }
    }

    fn batch(from: u64, n: u64) -> Envelope {
        Envelope::Records(Box::new(
            (from..from + n)
                .map(|v| StreamRecord::new(v, v as i64 * 10))
                .collect::<Batch<u64>>(),
        ))
    }

    /// What a consuming task reads, until its channel ends or `timeout`.
    #[derive(Debug, PartialEq)]
    enum Read {
        Records(Vec<(u64, i64)>),
        Watermark(i64),
        End,
        /// The channel ended without end of input; with the reason if this side knows it.
        ProducerFailed(Option<String>),
    }

    fn read_all(gate: &mut InputGate, timeout: Duration) -> Vec<Read> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        while Instant::now() < deadline {
            match gate.poll() {
                Polled::Element(channel, envelope) => got.push(match envelope {
                    Envelope::Records(b) => Read::Records(
                        downcast_batch::<u64>(b)
                            .expect("u64 records")
                            .into_iter()
                            .map(|r| (r.value, r.timestamp))
                            .collect(),
                    ),
                    Envelope::Watermark(w) => Read::Watermark(w),
                    Envelope::EndOfInput => {
                        gate.finish(channel);
                        Read::End
                    }
                    other => panic!("unexpected element {:?}", std::mem::discriminant(&other)),
                }),
                Polled::Empty => gate.wait(Duration::from_millis(50)),
                Polled::Finished => return got,
                Polled::Disconnected(why) => {
                    got.push(Read::ProducerFailed(why));
                    return got;
                }
            }
        }
        got
    }

    #[test]
    fn elements_cross_in_order_and_the_channel_ends() {
        let rt = runtime();
        let exchange = Exchange::new(Duration::from_secs(5));
        let address = serve(&rt, &exchange);
        let edge = TypedEdge::<u64>::plain();
        let mut gate = InputGate::new(vec![exchange.expect(key(3), edge.clone(), 0, 4)]);
        let sender = RemoteSender::open(rt.handle(), connect(&rt, address), key(3), edge);
        let producer = std::thread::spawn(move || {
            for i in 0..50 {
                sender
                    .send(batch(i * 100, 100), &TaskTimes::default())
                    .expect("sent");
                sender
                    .send(Envelope::Watermark(i as i64), &TaskTimes::default())
                    .expect("sent");
            }
            sender
                .send(Envelope::EndOfInput, &TaskTimes::default())
                .expect("sent");
        });
        let got = read_all(&mut gate, Duration::from_secs(20));
        producer.join().expect("the producer ends");
        let mut expected = Vec::new();
        for i in 0..50u64 {
            expected.push(Read::Records(
                (i * 100..i * 100 + 100)
                    .map(|v| (v, v as i64 * 10))
                    .collect(),
            ));
            expected.push(Read::Watermark(i as i64));
        }
        expected.push(Read::End);
        assert_eq!(got, expected);
    }

    #[test]
    fn a_consumer_that_stops_reading_stops_its_producer() {
        let rt = runtime();
        let exchange = Exchange::new(Duration::from_secs(5));
        let address = serve(&rt, &exchange);
        let edge = TypedEdge::<u64>::plain();
        let capacity = 4;
        let mut gate = InputGate::new(vec![exchange.expect(key(0), edge.clone(), 0, capacity)]);
        let sender = RemoteSender::open(rt.handle(), connect(&rt, address), key(0), edge);
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        let total: u64 = 200;
        let producer = std::thread::spawn(move || {
            for i in 0..total {
                sender
                    .send(batch(i, 1_000), &TaskTimes::default())
                    .expect("sent");
                counter.fetch_add(1, Ordering::SeqCst);
            }
            sender
                .send(Envelope::EndOfInput, &TaskTimes::default())
                .expect("sent");
        });
        // Nobody reads: the producer gets `capacity` frames into the consumer's queue,
        // one into the stream waiting for credit and one into its own queue, then blocks.
        std::thread::sleep(Duration::from_millis(500));
        let stalled_at = sent.load(Ordering::SeqCst);
        assert!(
            stalled_at <= capacity + 2,
            "{stalled_at} frames sent with room for {capacity}"
        );
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            sent.load(Ordering::SeqCst),
            stalled_at,
            "the producer stays blocked"
        );
        // Reading again lets everything through.
        let got = read_all(&mut gate, Duration::from_secs(20));
        producer.join().expect("the producer ends");
        assert_eq!(got.len() as u64, total + 1);
        assert_eq!(got.last(), Some(&Read::End));
    }

    #[test]
    fn a_producer_that_vanishes_fails_its_consumer() {
        let rt = runtime();
        let exchange = Exchange::new(Duration::from_secs(5));
        let address = serve(&rt, &exchange);
        let edge = TypedEdge::<u64>::plain();
        let mut gate = InputGate::new(vec![exchange.expect(key(0), edge.clone(), 0, 4)]);
        let sender = RemoteSender::open(rt.handle(), connect(&rt, address), key(0), edge);
        sender
            .send(batch(0, 10), &TaskTimes::default())
            .expect("sent");
        drop(sender); // without end of input, as when its task or process dies
        let got = read_all(&mut gate, Duration::from_secs(10));
        assert_eq!(
            got,
            [
                Read::Records((0..10).map(|v| (v, v as i64 * 10)).collect()),
                Read::ProducerFailed(None)
            ]
        );
    }

    #[test]
    fn unreadable_data_fails_the_consumer_with_the_reason() {
        let rt = runtime();
        let exchange = Exchange::new(Duration::from_secs(5));
        let address = serve(&rt, &exchange);
        // The producer sends strings where the consumer reads numbers, as when two
        // processes of a job run different binaries.
        let mut gate = InputGate::new(vec![exchange.expect(
            key(4),
            TypedEdge::<u64>::plain(),
            0,
            4,
        )]);
        let sender = RemoteSender::open(
            rt.handle(),
            connect(&rt, address),
            key(4),
            TypedEdge::<String>::plain(),
        );
        let text = Envelope::Records(Box::new(vec![StreamRecord::untimed("x".to_string())]));
        sender.send(text, &TaskTimes::default()).expect("sent");
        let got = read_all(&mut gate, Duration::from_secs(10));
        let [Read::ProducerFailed(Some(why))] = &got[..] else {
            panic!("the consumer fails with the reason, got {got:?}");
        };
        assert!(why.contains("edge 4") && why.contains("u64"), "{why}");
        assert!(why.contains("same binary"), "{why}");
    }

    #[test]
    fn a_channel_nobody_expects_is_refused_with_the_reason() {
        let rt = runtime();
        let exchange = Exchange::new(Duration::from_millis(200));
        let address = serve(&rt, &exchange);
        // Expected by an attempt that has ended since: forgotten, so refused too.
        let _gone = exchange.expect(key(9), TypedEdge::<u64>::plain(), 0, 4);
        exchange.forget_attempt("job-1", 0);
        let sender = RemoteSender::open(
            rt.handle(),
            connect(&rt, address),
            key(9),
            TypedEdge::<u64>::plain(),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            match sender.send(batch(0, 1), &TaskTimes::default()) {
                Err(e) => break e,
                Ok(()) if Instant::now() < deadline => {}
                Ok(()) => panic!("frames to nowhere kept being accepted"),
            }
        };
        let message = error.to_string();
        assert!(message.contains("edge 9"), "{message}");
        assert!(
            message.contains("no subtask in this worker expects"),
            "{message}"
        );
    }

    #[test]
    fn a_producer_may_connect_before_its_consumer_is_expected() {
        let rt = runtime();
        let exchange = Exchange::new(Duration::from_secs(5));
        let address = serve(&rt, &exchange);
        let edge = TypedEdge::<u64>::plain();
        let sender = RemoteSender::open(rt.handle(), connect(&rt, address), key(1), edge.clone());
        std::thread::sleep(Duration::from_millis(200));
        let mut gate = InputGate::new(vec![exchange.expect(key(1), edge, 0, 2)]);
        let producer = std::thread::spawn(move || {
            sender
                .send(batch(7, 3), &TaskTimes::default())
                .expect("sent");
            sender
                .send(Envelope::EndOfInput, &TaskTimes::default())
                .expect("sent");
        });
        let got = read_all(&mut gate, Duration::from_secs(10));
        producer.join().expect("the producer ends");
        assert_eq!(
            got,
            [Read::Records(vec![(7, 70), (8, 80), (9, 90)]), Read::End]
        );
    }
}
