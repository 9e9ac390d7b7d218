//! Who may hold a connection before it has authenticated.
//!
//! An unauthenticated socket costs the attacker nothing, so it must cost the hub little and
//! never keep a device out. Every accepted socket first takes a place in a small pre-auth
//! pool (bounded in total and per source address) for at most the CONNECT deadline; only once
//! its CONNECT is authenticated does it move to the pool of real connections
//! (`broker.max_connections`). When the pre-auth pool, or an address's share of it, is full, a
//! new socket takes the place of the **oldest** pending one rather than being refused: a
//! device's CONNECT follows its TCP (and TLS) handshake within milliseconds, so it gets
//! through however many idle sockets an attacker holds, while an idle socket loses its place
//! to the next arrival. Evictions are counted.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Limits of the pre-auth pool.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Pending (unauthenticated) connections in all.
    pub pool: usize,
    /// Pending connections from one source address.
    pub per_address: usize,
}

#[derive(Debug, Default)]
struct State {
    next: u64,
    /// Pending tickets, oldest first (ids increase), with where they came from and how to end
    /// them.
    pending: BTreeMap<u64, (IpAddr, oneshot::Sender<()>)>,
    by_address: HashMap<IpAddr, VecDeque<u64>>,
    evicted: u64,
}

/// The pre-auth pool. Cheap to share.
#[derive(Debug, Clone)]
pub struct Admission {
    limits: Limits,
    state: Arc<Mutex<State>>,
}

/// A place in the pre-auth pool. `evicted` resolves when a newer connection took the place;
/// dropping the ticket (authenticated, refused or closed) frees it.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    addr: IpAddr,
    state: Arc<Mutex<State>>,
    pub evicted: oneshot::Receiver<()>,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                pool: limits.pool.max(1),
                per_address: limits.per_address.max(1),
            },
            state: Arc::default(),
        }
    }

    /// A place for a new connection from `addr`, ending the oldest pending connection of that
    /// address, or of all, when either is at its limit.
    pub fn admit(&self, addr: IpAddr) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let queue_len = s.by_address.get(&addr).map_or(0, VecDeque::len);
        if queue_len >= self.limits.per_address {
            let oldest = s.by_address.get_mut(&addr).and_then(VecDeque::pop_front);
            if let Some(id) = oldest {
                evict(s, id);
            }
        }
        let oldest = s.pending.iter().next().map(|(&id, (a, _))| (id, *a));
        if s.pending.len() >= self.limits.pool
            && let Some((id, a)) = oldest
        {
            if let Some(q) = s.by_address.get_mut(&a) {
                q.retain(|&x| x != id);
                if q.is_empty() {
                    s.by_address.remove(&a);
                }
            }
            evict(s, id);
        }
        let id = s.next;
        s.next += 1;
        s.pending.insert(id, (addr, tx));
        s.by_address.entry(addr).or_default().push_back(id);
        Ticket {
            id,
            addr,
            state: self.state.clone(),
            evicted: rx,
        }
    }

    /// Connections waiting to authenticate now.
    pub fn pending(&self) -> usize {
        self.state.lock().map(|s| s.pending.len()).unwrap_or(0)
    }

    /// Pending connections ended by newer ones since start.
    pub fn evicted(&self) -> u64 {
        self.state.lock().map(|s| s.evicted).unwrap_or(0)
    }
}

fn evict(s: &mut State, id: u64) {
    if let Some((_, tx)) = s.pending.remove(&id) {
        s.evicted += 1;
        let _ = tx.send(());
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.pending.remove(&self.id);
        if let Some(q) = s.by_address.get_mut(&self.addr) {
            q.retain(|&x| x != self.id);
            if q.is_empty() {
                s.by_address.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn an_address_at_its_limit_loses_its_oldest_pending_connection_not_the_new_one() {
        let a = Admission::new(Limits {
            pool: 100,
            per_address: 2,
        });
        let mut first = a.admit(ip(2));
        let mut second = a.admit(ip(2));
        let mut other = a.admit(ip(3));
        let mut third = a.admit(ip(2));
        assert!(first.evicted.try_recv().is_ok(), "the oldest was ended");
        assert!(second.evicted.try_recv().is_err());
        assert!(third.evicted.try_recv().is_err());
        assert!(
            other.evicted.try_recv().is_err(),
            "another address is untouched"
        );
        assert_eq!(a.pending(), 3);
        assert_eq!(a.evicted(), 1);
    }

    #[test]
    fn a_full_pool_ends_the_oldest_pending_connection_of_any_address() {
        let a = Admission::new(Limits {
            pool: 3,
            per_address: 10,
        });
        let mut t: Vec<Ticket> = (1..=3).map(|i| a.admit(ip(i))).collect();
        let mut newest = a.admit(ip(9));
        assert!(t[0].evicted.try_recv().is_ok());
        assert!(t[1].evicted.try_recv().is_err());
        assert!(newest.evicted.try_recv().is_err());
        assert_eq!(a.pending(), 3);
    }

    #[test]
    fn a_dropped_ticket_frees_its_place() {
        let a = Admission::new(Limits {
            pool: 2,
            per_address: 1,
        });
        let t = a.admit(ip(2));
        drop(t);
        let mut u = a.admit(ip(2));
        assert!(u.evicted.try_recv().is_err());
        assert_eq!((a.pending(), a.evicted()), (1, 0));
    }
}
