//! `[net]` decisions against a reference of the README's rules: a generated
//! `[net]` table (single IPs, CIDR blocks, the unspecified and IPv4-mapped
//! addresses, single ports, ranges and `*`), loaded as a policy file, then
//! generated uses (connect, bind, listen on a port the socket asked for or
//! was given, send), each decided by the policy and by a few lines here:
//!
//! - an IPv4-mapped IPv6 address is the IPv4 address;
//! - an entry's IP admits that address only; a block admits the addresses
//!   inside it, never the unspecified one (`0.0.0.0`, `::`);
//! - the port must lie in the entry's port, range or `*`;
//! - a listen is admitted when an entry admits the bound address and port,
//!   or the socket asked for port 0 and an entry admits port 0 there.
//!
//! Every generated table is valid, so it must load; every use must be decided
//! as the reference says, and a refusal must name the key that decides it.

use arbitrary::{Result as AResult, Unstructured};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use wasmcell::Policy;
use wasmcell::policy::{NetGrants, NetKind};

/// Most entries per key, and uses per case.
const MAX_ENTRIES: usize = 4;
const MAX_USES: usize = 32;

/// What one case did, for the smoke's tally.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetCase {
    /// Uses decided and compared with the reference.
    pub uses: usize,
    /// Of those, the uses both admitted.
    pub admitted: usize,
}

/// Where the addresses come from: a few that collide often (loopback, the
/// unspecified and IPv4-mapped addresses, the ends of each family), or any.
fn ip(u: &mut Unstructured) -> AResult<IpAddr> {
    const POOL: [&str; 12] = [
        "127.0.0.1",
        "127.0.0.2",
        "10.1.2.3",
        "0.0.0.0",
        "255.255.255.255",
        "192.0.2.2",
        "::1",
        "::",
        "fd00::2",
        "::ffff:127.0.0.1",
        "::ffff:0.0.0.0",
        "fe80::1",
    ];
    Ok(match u.int_in_range(0..=3)? {
        0 => IpAddr::V4(Ipv4Addr::from(u.arbitrary::<u32>()?)),
        1 => IpAddr::V6(Ipv6Addr::from(u.arbitrary::<u128>()?)),
        _ => u.choose(&POOL)?.parse().expect("the pool holds addresses"),
    })
}

fn port(u: &mut Unstructured) -> AResult<u16> {
    Ok(match u.int_in_range(0..=2)? {
        0 => u.arbitrary()?,
        _ => *u.choose(&[0, 1, 80, 8080, 8081, 65535])?,
    })
}

/// One entry: its host (an IP, or a block with its prefix) and ports.
struct Entry {
    ip: IpAddr,
    prefix: Option<u8>,
    ports: (u16, u16),
}

impl Entry {
    fn arbitrary(u: &mut Unstructured) -> AResult<Entry> {
        let ip = ip(u)?;
        // A block is written on the address as given; a mapped one would be
        // an IPv4 block with an IPv6 prefix, which the loader refuses.
        let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = if !mapped && u.ratio(1, 3)? {
            Some(u.int_in_range(0..=max)?)
        } else {
            None
        };
        let ports = match u.int_in_range(0..=2)? {
            0 => (0, u16::MAX),
            1 => {
                let (a, b) = (port(u)?, port(u)?);
                (a.min(b), a.max(b))
            }
            _ => {
                let p = port(u)?;
                (p, p)
            }
        };
        Ok(Entry { ip, prefix, ports })
    }

    /// As a `[net]` list item.
    fn written(&self) -> String {
        let host = match (self.ip, self.prefix) {
            (IpAddr::V4(v4), None) => v4.to_string(),
            (IpAddr::V4(v4), Some(p)) => format!("{v4}/{p}"),
            (IpAddr::V6(v6), None) => format!("[{v6}]"),
            (IpAddr::V6(v6), Some(p)) => format!("[{v6}/{p}]"),
        };
        let ports = match self.ports {
            (0, u16::MAX) => "*".to_string(),
            (lo, hi) if lo == hi => lo.to_string(),
            (lo, hi) => format!("{lo}-{hi}"),
        };
        format!("\"{host}:{ports}\"")
    }

    /// The reference: whether this entry admits `addr`.
    fn admits(&self, addr: SocketAddr) -> bool {
        let (ip, entry) = (normal(addr.ip()), normal(self.ip));
        let host = match self.prefix {
            None => ip == entry,
            Some(_) if ip.is_unspecified() => false,
            Some(prefix) => same_prefix(ip, entry, prefix),
        };
        host && (self.ports.0..=self.ports.1).contains(&addr.port())
    }
}

fn normal(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn same_prefix(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    let bits = |a: IpAddr| match a {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, true),
        IpAddr::V6(v6) => (u128::from(v6), false),
    };
    // An IPv4 address sits in the top 32 bits, so a prefix counts from the top either way.
    let ((a, a4), (b, b4)) = (bits(ip), bits(net));
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    };
    a4 == b4 && (a & mask) == (b & mask)
}

const KINDS: [NetKind; 4] = [
    NetKind::TcpConnect,
    NetKind::TcpBind,
    NetKind::UdpBind,
    NetKind::UdpSend,
];

/// Builds a `[net]` table from `data`, loads it, and decides generated uses
/// with the policy and with the reference; panics where they differ.
pub fn check_net(data: &[u8]) -> NetCase {
    let mut u = Unstructured::new(data);
    let mut table = Vec::new();
    let mut text = String::from("[net]\n");
    for kind in KINDS {
        let entries = build_entries(&mut u).unwrap_or_default();
        let items: Vec<String> = entries.iter().map(Entry::written).collect();
        text += &format!("{} = [{}]\n", kind.name(), items.join(", "));
        table.push((kind, entries));
    }
    let policy = Policy::from_toml(&text, Path::new("."))
        .unwrap_or_else(|e| panic!("a generated [net] table was refused: {e}\n{text}"));
    let near: Vec<(IpAddr, u16)> = table
        .iter()
        .flat_map(|(_, entries)| {
            entries
                .iter()
                .flat_map(|e| [(e.ip, e.ports.0), (e.ip, e.ports.1), (e.ip, 0)])
        })
        .collect();
    let mut case = NetCase::default();
    while case.uses < MAX_USES && !u.is_empty() {
        let Ok((kind, addr, ephemeral)) = arbitrary_use(&mut u, &near) else {
            break;
        };
        let rules = &table.iter().find(|(k, _)| *k == key(kind)).expect("every key").1;
        let expected = match kind {
            NetKind::TcpListen => rules
                .iter()
                .any(|e| e.admits(addr) || (ephemeral && e.admits(SocketAddr::new(addr.ip(), 0)))),
            _ => rules.iter().any(|e| e.admits(addr)),
        };
        let decided = decide(policy.net(), kind, addr, ephemeral);
        assert_eq!(
            decided.is_ok(),
            expected,
            "{} {addr} (asked for port 0: {ephemeral}) decided {decided:?}\n{text}",
            kind.name()
        );
        if let Err(rule) = decided {
            let key = key(kind).name();
            assert!(
                rule.contains(&format!("[net] {key}")),
                "the refusal names no key: {rule}"
            );
        }
        case.uses += 1;
        case.admitted += usize::from(expected);
    }
    case
}

fn build_entries(u: &mut Unstructured) -> AResult<Vec<Entry>> {
    let n = u.int_in_range(0..=MAX_ENTRIES)?;
    (0..n).map(|_| Entry::arbitrary(u)).collect()
}

/// A use of any kind, half the time at an address and port some entry names
/// (its ends, or port 0), so that admitted uses are as common as refused ones.
fn arbitrary_use(u: &mut Unstructured, near: &[(IpAddr, u16)]) -> AResult<(NetKind, SocketAddr, bool)> {
    let kind = *u.choose(&[
        NetKind::TcpConnect,
        NetKind::TcpBind,
        NetKind::TcpListen,
        NetKind::UdpBind,
        NetKind::UdpSend,
    ])?;
    let (ip, port) = match near.is_empty() || u.arbitrary()? {
        true => (ip(u)?, port(u)?),
        false => *u.choose(near)?,
    };
    Ok((kind, SocketAddr::new(ip, port), u.arbitrary()?))
}

fn decide(net: &NetGrants, kind: NetKind, addr: SocketAddr, ephemeral: bool) -> Result<(), String> {
    match kind {
        NetKind::TcpListen => net.check_listen(addr, ephemeral),
        _ => net.check(kind, addr),
    }
}

/// The key whose entries decide a use (a listen is decided by `tcp-bind`).
fn key(kind: NetKind) -> NetKind {
    match kind {
        NetKind::TcpListen => NetKind::TcpBind,
        other => other,
    }
}
