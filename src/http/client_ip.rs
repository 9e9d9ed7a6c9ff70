//! Which address a delivery came from: the peer, or X-Forwarded-For behind trusted proxies.
//!
//! Only a peer inside `[server] trusted_proxies` may name the client. The header is read
//! from the right (the hops nearest to us); the first hop that is not a trusted proxy is
//! the client, so a client cannot spoof its address by prepending entries.
//!
//! A server listening on `[::]` sees IPv4 clients as IPv4-mapped IPv6 addresses
//! (`::ffff:203.0.113.5`); every address is made canonical (IPv4 again) before it is matched
//! against `trusted_proxies` or `allow_ips`, logged or stored.

use ipnet::IpNet;
use std::net::IpAddr;

pub fn client_ip<'a>(peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|h| h.split(',')).map(str::trim).collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) else {
            // An unreadable hop ends the chain we can trust.
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_cannot_name_the_client() {
        let got = client_ip(ip("198.51.100.9"), ["203.0.113.5"].into_iter(), &nets(&["10.0.0.0/8"]));
        assert_eq!(got, ip("198.51.100.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_hop_wins() {
        let trusted = nets(&["10.0.0.0/8"]);
        let header = "1.1.1.1, 203.0.113.5, 10.0.0.3";
        assert_eq!(client_ip(ip("10.0.0.2"), [header].into_iter(), &trusted), ip("203.0.113.5"));
    }

    #[test]
    fn a_trusted_peer_without_the_header_is_the_client() {
        assert_eq!(client_ip(ip("10.0.0.2"), std::iter::empty(), &nets(&["10.0.0.0/8"])), ip("10.0.0.2"));
    }

    #[test]
    fn an_ipv4_mapped_peer_is_the_ipv4_client_and_is_matched_as_ipv4() {
        assert_eq!(client_ip(ip("::ffff:198.51.100.9"), std::iter::empty(), &[]), ip("198.51.100.9"));
        let trusted = nets(&["10.0.0.0/8"]);
        let got = client_ip(ip("::ffff:10.0.0.2"), ["203.0.113.5"].into_iter(), &trusted);
        assert_eq!(got, ip("203.0.113.5"), "a mapped peer inside an IPv4 range is a trusted proxy");
    }

    #[test]
    fn ipv4_mapped_hops_in_x_forwarded_for_are_read_as_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        let header = "::ffff:203.0.113.5, ::ffff:10.0.0.3";
        assert_eq!(client_ip(ip("10.0.0.2"), [header].into_iter(), &trusted), ip("203.0.113.5"));
        assert_eq!(client_ip(ip("10.0.0.2"), ["2001:db8::7"].into_iter(), &trusted), ip("2001:db8::7"));
    }

    #[test]
    fn garbage_in_the_header_stops_at_the_last_trusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(client_ip(ip("10.0.0.2"), ["evil, 10.0.0.9"].into_iter(), &trusted), ip("10.0.0.9"));
    }
}
