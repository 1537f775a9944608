//! Splitting a fleet between the watch processes that share it: rendezvous (highest
//! random weight) hashing over the live members. Every member computes the same owner
//! for every key from the same member list, so each server is checked by exactly one;
//! when a member leaves or dies only its keys move, spread over the others.

/// The live members and this process's name among them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shards {
    members: Vec<String>,
    me: String,
}

/// A 64-bit weight of (member, key): FNV-1a over both (with a separator), then the
/// splitmix64 finaliser so that near-identical names spread evenly.
fn weight(member: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in member.bytes().chain(std::iter::once(0)).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The member that owns `key` among `members` (`None` when there are none).
pub fn owner<'m>(members: &'m [String], key: &str) -> Option<&'m str> {
    members.iter().max_by_key(|m| (weight(m, key), m.as_str())).map(String::as_str)
}

impl Shards {
    /// A process alone (it owns everything).
    pub fn alone(me: &str) -> Self {
        Self { members: vec![me.to_owned()], me: me.to_owned() }
    }

    /// `me` among `members` (added when missing: a process always counts itself).
    pub fn new(mut members: Vec<String>, me: &str) -> Self {
        if !members.iter().any(|m| m == me) {
            members.push(me.to_owned());
        }
        members.sort();
        members.dedup();
        Self { members, me: me.to_owned() }
    }

    /// The live members, sorted.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Whether this process owns `key` (a server name, or `site:<domain>` for checks
    /// not bound to a server, or `job:<name>` for fleet-wide jobs).
    pub fn owns(&self, key: &str) -> bool {
        owner(&self.members, key) == Some(self.me.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn every_key_has_exactly_one_owner() {
        let members = names("watch-", 3);
        let shards: Vec<Shards> = members.iter().map(|m| Shards::new(members.clone(), m)).collect();
        for key in names("edge-", 1000) {
            assert_eq!(shards.iter().filter(|s| s.owns(&key)).count(), 1, "{key}");
        }
    }

    /// The target: 3 watch processes on 1,000 servers, each round's work within
    /// ±10 % of an even split (also with other member names).
    #[test]
    fn three_members_split_a_thousand_servers_within_ten_percent() {
        for members in [names("watch-", 3), vec!["cp-a:4121".into(), "cp-b:977".into(), "edge-ops".into()]] {
            let servers = names("edge-", 1000);
            for m in &members {
                let mine = servers.iter().filter(|s| owner(&members, s) == Some(m.as_str())).count();
                assert!((300..=367).contains(&mine), "{m}: {mine} of 1000 ({members:?})");
            }
        }
    }

    #[test]
    fn when_a_member_goes_only_its_keys_move() {
        let all = names("watch-", 3);
        let without: Vec<String> = all.iter().filter(|m| *m != "watch-1").cloned().collect();
        for key in names("edge-", 1000) {
            let before = owner(&all, &key);
            let after = owner(&without, &key);
            if before != Some("watch-1") {
                assert_eq!(before, after, "{key} moved although its owner stayed");
            }
        }
        assert!(Shards::alone("x").owns("anything"));
        assert_eq!(owner(&[], "k"), None);
    }
}
