//! Request order on one connection, for the two things that depend on it: the order in
//! which Produce requests reach the group-commit writer, and the order in which Fetch
//! requests reserve the connection's response allowance (a later Fetch that took it first
//! would wait forever for an earlier one the connection must write before it).
//!
//! A connection's requests are handled by concurrent tasks (clients pipeline Produce), so
//! two Produce requests for one partition could reach the writer in either order, and
//! their records would get offsets out of send order. Kafka guarantees the order in which
//! one connection's requests are applied. So each request holds a link of a chain: it
//! may enqueue its records only after the request before it has enqueued its own, or has
//! finished without any.

use tokio::sync::oneshot;

/// Hands out the links of one connection's chain, in request order.
#[derive(Default)]
pub struct Chain {
    previous_done: Option<oneshot::Receiver<()>>,
}

impl Chain {
    /// The link of the next request.
    pub fn next_link(&mut self) -> InOrder {
        let (done, next_waits_on) = oneshot::channel();
        InOrder { previous_done: self.previous_done.replace(next_waits_on), done: Some(done) }
    }
}

/// One request's place in its connection's order.
pub struct InOrder {
    previous_done: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl InOrder {
    /// A link with nothing before it (a request handled on its own, as in tests).
    pub fn first() -> InOrder {
        InOrder { previous_done: None, done: None }
    }

    /// Waits until every earlier request of the connection has taken its turn.
    pub async fn wait_turn(&mut self) {
        if let Some(previous) = self.previous_done.take() {
            // An error means the previous link was dropped: its turn is over too.
            let _ = previous.await;
        }
    }

    /// Lets the next request take its turn. Call after [`wait_turn`](Self::wait_turn).
    pub fn pass(&mut self) {
        self.done.take();
    }
}

impl Drop for InOrder {
    /// A link dropped before its turn came (a request that enqueues nothing, or failed)
    /// passes the turn on only once its predecessor has, so no later request overtakes.
    fn drop(&mut self) {
        let (Some(mut previous), Some(done)) = (self.previous_done.take(), self.done.take()) else { return };
        // Most often the predecessor is long done: pass the turn on at once.
        if !matches!(previous.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let _ = previous.await;
                    drop(done);
                });
            }
            // No runtime: nobody can be waiting on this chain any more.
            Err(_) => drop(done),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[tokio::test]
    async fn links_take_turns_in_request_order_even_when_started_backwards() {
        let mut chain = Chain::default();
        let links: Vec<InOrder> = (0..4).map(|_| chain.next_link()).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (index, mut link) in links.into_iter().enumerate().rev() {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                if index == 1 {
                    drop(link); // a request that enqueues nothing
                    return;
                }
                link.wait_turn().await;
                order.lock().unwrap().push(index);
                tokio::time::sleep(Duration::from_millis(5)).await;
                link.pass();
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 2, 3]);
    }
}
