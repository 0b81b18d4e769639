//! [`Rule`]: a policy routing rule and its `ip rule` text.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::{Error, Op};
use crate::names::{parse_table, table_name, Protocol, DEFAULT_TABLE, LOCAL_TABLE, MAIN_TABLE};
use crate::route::{parse_err, parse_prefix, strip_command};
use crate::show::fmt_net;

/// An address family.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Family {
    /// IPv4 (`AF_INET`).
    #[default]
    V4,
    /// IPv6 (`AF_INET6`).
    V6,
}

impl Family {
    /// The family of a prefix.
    #[must_use]
    pub fn of(net: &IpNet) -> Family {
        if net.addr().is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }
}

/// What a rule does when it matches.
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RuleAction {
    /// `lookup TABLE`: look the packet up in the rule's table.
    #[default]
    Lookup,
    /// `goto PRIORITY`.
    Goto(u32),
    /// `nop`.
    Nop,
    /// `blackhole`.
    Blackhole,
    /// `unreachable`.
    Unreachable,
    /// `prohibit`.
    Prohibit,
}

/// A policy routing rule, with the fields of Cilium's `route.Rule` plus
/// family, protocol, invert and action.
///
/// ```
/// use podnet_route::{Rule, Family};
///
/// let r = Rule::new(Family::V4)
///     .priority(30)
///     .from("192.168.105.44/32".parse().unwrap())
///     .to("192.168.0.0/16".parse().unwrap())
///     .table(92);
/// assert_eq!(r.to_ip_command(),
///     "ip rule add priority 30 from 192.168.105.44 to 192.168.0.0/16 lookup 92");
/// assert_eq!(r.to_string().parse::<Rule>().unwrap(), r);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Rule {
    /// The priority (`priority`); `None` lets the kernel pick one.
    pub priority: Option<u32>,
    /// The family.
    pub family: Family,
    /// The firewall mark to match (`fwmark`).
    pub mark: Option<u32>,
    /// The mask applied to the mark before matching; `None` = all bits.
    pub mask: Option<u32>,
    /// The source prefix (`from`); `None` = all.
    pub from: Option<IpNet>,
    /// The destination prefix (`to`); `None` = all.
    pub to: Option<IpNet>,
    /// The table for [`RuleAction::Lookup`]; main by default.
    pub table: u32,
    /// The action.
    pub action: RuleAction,
    /// The protocol that installed the rule (`proto`); unspec by default.
    pub protocol: Protocol,
    /// Match when the selector does *not* match (`not`).
    pub invert: bool,
}

impl Rule {
    /// A rule of `family` that matches everything and looks up main.
    #[must_use]
    pub fn new(family: Family) -> Rule {
        Rule {
            priority: None,
            family,
            mark: None,
            mask: None,
            from: None,
            to: None,
            table: MAIN_TABLE,
            action: RuleAction::Lookup,
            protocol: Protocol::UNSPEC,
            invert: false,
        }
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, p: u32) -> Rule {
        self.priority = Some(p);
        self
    }

    /// Sets the source prefix (a /0 means all) and the family from it.
    #[must_use]
    pub fn from(mut self, net: IpNet) -> Rule {
        self.family = Family::of(&net);
        self.from = (net.prefix_len() > 0).then_some(net);
        self
    }

    /// Sets the destination prefix (a /0 means all) and the family from it.
    #[must_use]
    pub fn to(mut self, net: IpNet) -> Rule {
        self.family = Family::of(&net);
        self.to = (net.prefix_len() > 0).then_some(net);
        self
    }

    /// Sets the mark and mask (`fwmark MARK/MASK`; a mask of all ones is
    /// the same as none).
    #[must_use]
    pub fn mark(mut self, mark: u32, mask: u32) -> Rule {
        self.mark = Some(mark);
        self.mask = (mask != u32::MAX).then_some(mask);
        self
    }

    /// Sets the table to look up.
    #[must_use]
    pub fn table(mut self, table: u32) -> Rule {
        self.table = table;
        self.action = RuleAction::Lookup;
        self
    }

    /// Sets the action (any action but `Lookup` clears the table).
    #[must_use]
    pub fn action(mut self, action: RuleAction) -> Rule {
        self.action = action;
        if action != RuleAction::Lookup {
            self.table = 0;
        }
        self
    }

    /// Sets the protocol.
    #[must_use]
    pub fn protocol(mut self, p: Protocol) -> Rule {
        self.protocol = p;
        self
    }

    /// Inverts the selector (`not`).
    #[must_use]
    pub fn invert(mut self, invert: bool) -> Rule {
        self.invert = invert;
        self
    }

    /// The `ip` command that adds this rule: `ip [-6] rule add <Display>`.
    #[must_use]
    pub fn to_ip_command(&self) -> String {
        match self.family {
            Family::V4 => format!("ip rule add {self}"),
            Family::V6 => format!("ip -6 rule add {self}"),
        }
    }

    /// Checks the rule on its own: prefixes of the rule's family without
    /// host bits, a table for `lookup`, a mask only with a mark.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` saying what is wrong.
    pub fn validate(&self, op: Op) -> Result<(), Error> {
        let bad = |reason: String| Error::InvalidInput {
            op,
            object: self.to_string(),
            reason,
        };
        for net in [self.from, self.to].into_iter().flatten() {
            if Family::of(&net) != self.family {
                return Err(bad(format!("{net} is not of the rule's family")));
            }
            if net.trunc() != net {
                return Err(bad(format!("{net} has host bits set")));
            }
        }
        if self.action == RuleAction::Lookup && self.table == 0 {
            return Err(bad("lookup needs a table other than 0".into()));
        }
        if self.mask.is_some() && self.mark.is_none() {
            return Err(bad("a mark mask without a mark".into()));
        }
        Ok(())
    }

    /// The kernel's default rules of `family`: `0: from all lookup local`,
    /// `32766: from all lookup main` and, for IPv4, `32767: from all
    /// lookup default` (protocol kernel).
    ///
    /// ```
    /// use podnet_route::{Family, Rule};
    /// let d = Rule::system_rules(Family::V4);
    /// assert_eq!(d[1].to_string(), "priority 32766 from all lookup main proto kernel");
    /// assert!(d.iter().all(Rule::is_system));
    /// assert_eq!(Rule::system_rules(Family::V6).len(), 2);
    /// ```
    #[must_use]
    pub fn system_rules(family: Family) -> Vec<Rule> {
        let mut v = vec![(0, LOCAL_TABLE), (32766, MAIN_TABLE)];
        if family == Family::V4 {
            v.push((32767, DEFAULT_TABLE));
        }
        v.into_iter()
            .map(|(p, t)| {
                Rule::new(family)
                    .priority(p)
                    .table(t)
                    .protocol(Protocol::KERNEL)
            })
            .collect()
    }

    fn selects_all(&self) -> bool {
        self.from.is_none() && self.to.is_none() && self.mark.is_none() && !self.invert
    }

    /// `true` for one of the kernel's default rules (see
    /// [`Rule::system_rules`]; protocol kernel or unspec).
    #[must_use]
    pub fn is_system(&self) -> bool {
        let mut r = self.clone().normalized();
        if r.protocol == Protocol::UNSPEC {
            r.protocol = Protocol::KERNEL;
        }
        Rule::system_rules(self.family).contains(&r)
    }

    /// The default rule at this rule's priority when this rule selects
    /// `from all` there too (adding it would make that default rule a
    /// stale variant).
    pub(crate) fn system_slot(&self) -> Option<Rule> {
        if !self.selects_all() {
            return None;
        }
        let sys = Rule::system_rules(self.family)
            .into_iter()
            .find(|s| s.priority == self.priority)?;
        (!self.is_system()).then_some(sys)
    }

    /// The default rule a delete of this rule could hit (the kernel takes
    /// the first rule matching what is given; no priority matches any).
    pub(crate) fn matching_system_rule(&self) -> Option<Rule> {
        if !self.selects_all()
            || self.action != RuleAction::Lookup
            || !matches!(self.protocol, Protocol::UNSPEC | Protocol::KERNEL)
        {
            return None;
        }
        Rule::system_rules(self.family)
            .into_iter()
            .find(|s| s.table == self.table && self.priority.is_none_or(|p| s.priority == Some(p)))
    }

    /// Normalises what the kernel treats as equal (a /0 prefix = none, an
    /// all-ones mask = none).
    pub(crate) fn normalized(mut self) -> Rule {
        if self.from.is_some_and(|n| n.prefix_len() == 0) {
            self.from = None;
        }
        if self.to.is_some_and(|n| n.prefix_len() == 0) {
            self.to = None;
        }
        if self.mask == Some(u32::MAX) {
            self.mask = None;
        }
        if self.action != RuleAction::Lookup {
            self.table = 0;
        }
        self
    }
}

impl fmt::Display for Rule {
    /// The arguments of `ip rule add` that recreate the rule:
    /// `[priority N] [not] from X [to Y] [fwmark M[/K]] lookup T|ACTION [proto P]`.
    /// An IPv6 rule without selectors prints `from ::/0` so its family
    /// survives a round trip.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(p) = self.priority {
            write!(f, "priority {p}")?;
            sep = " ";
        }
        if self.invert {
            write!(f, "{sep}not")?;
            sep = " ";
        }
        match (&self.from, self.family) {
            (Some(n), _) => write!(f, "{sep}from {}", fmt_net(n))?,
            (None, Family::V6) if self.to.is_none() => write!(f, "{sep}from ::/0")?,
            (None, _) => write!(f, "{sep}from all")?,
        }
        if let Some(n) = &self.to {
            write!(f, " to {}", fmt_net(n))?;
        }
        if let Some(m) = self.mark {
            match self.mask {
                Some(k) => write!(f, " fwmark {m:#x}/{k:#x}")?,
                None => write!(f, " fwmark {m:#x}")?,
            }
        }
        match self.action {
            RuleAction::Lookup => write!(f, " lookup {}", table_name(self.table))?,
            RuleAction::Goto(p) => write!(f, " goto {p}")?,
            RuleAction::Nop => write!(f, " nop")?,
            RuleAction::Blackhole => write!(f, " blackhole")?,
            RuleAction::Unreachable => write!(f, " unreachable")?,
            RuleAction::Prohibit => write!(f, " prohibit")?,
        }
        if self.protocol != Protocol::UNSPEC {
            write!(f, " proto {}", self.protocol)?;
        }
        Ok(())
    }
}

fn parse_u32(text: &str, v: &str) -> Result<u32, Error> {
    let r = if let Some(h) = v.strip_prefix("0x") {
        u32::from_str_radix(h, 16)
    } else {
        v.parse()
    };
    r.map_err(|_| parse_err(text, format!("{v:?} is not a number")))
}

impl FromStr for Rule {
    type Err = Error;

    /// Parses `ip rule add` arguments (optionally with a leading
    /// `ip [-6] rule add`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace().peekable();
        let v6 = strip_command(&mut words, "rule");
        let mut r = Rule::new(if v6 == Some(true) {
            Family::V6
        } else {
            Family::V4
        });
        let mut from = None;
        let mut to = None;
        while let Some(w) = words.next() {
            let mut value = || {
                words
                    .next()
                    .ok_or_else(|| parse_err(text, format!("{w:?} needs a value")))
            };
            match w {
                "priority" | "pref" | "preference" | "prio" => {
                    r.priority = Some(parse_u32(text, value()?)?)
                }
                "not" => r.invert = true,
                "from" => from = Some(value()?.to_string()),
                "to" => to = Some(value()?.to_string()),
                "fwmark" => {
                    let v = value()?;
                    let (m, k) = match v.split_once('/') {
                        Some((m, k)) => (m, Some(k)),
                        None => (v, None),
                    };
                    r.mark = Some(parse_u32(text, m)?);
                    r.mask = k.map(|k| parse_u32(text, k)).transpose()?;
                }
                "lookup" | "table" => {
                    r.table = parse_table(value()?).map_err(|e| parse_err(text, e.to_string()))?;
                    r.action = RuleAction::Lookup;
                }
                "goto" => r.action = RuleAction::Goto(parse_u32(text, value()?)?),
                "nop" => r.action = RuleAction::Nop,
                "blackhole" => r.action = RuleAction::Blackhole,
                "unreachable" => r.action = RuleAction::Unreachable,
                "prohibit" => r.action = RuleAction::Prohibit,
                "proto" | "protocol" => {
                    r.protocol = value()?
                        .parse()
                        .map_err(|e: crate::names::NameError| parse_err(text, e.to_string()))?
                }
                other => return Err(parse_err(text, format!("unsupported word {other:?}"))),
            }
        }
        // The family comes from the addresses when there are any (`all`,
        // `default` and `any` have none: they take the `-6` flag's), and
        // every address must be of it.
        let wildcard = |s: &str| matches!(s, "all" | "default" | "any");
        let fam_hint = [&from, &to]
            .into_iter()
            .flatten()
            .find(|s| !wildcard(s))
            .map(|s| s.contains(':'));
        let fam_v6 = fam_hint.or(v6);
        if v6.is_some() && fam_hint.is_some() && fam_hint != v6 {
            return Err(parse_err(
                text,
                "an address is not of the family given by -4/-6",
            ));
        }
        r.family = if fam_v6 == Some(true) {
            Family::V6
        } else {
            Family::V4
        };
        for (slot, val) in [(&mut r.from, from), (&mut r.to, to)] {
            if let Some(s) = val {
                if s != "all" {
                    let n = parse_prefix(text, &s, fam_v6)?;
                    if Family::of(&n) != r.family {
                        return Err(parse_err(
                            text,
                            format!("{s} is not of the rule's address family"),
                        ));
                    }
                    *slot = Some(n);
                }
            }
        }
        if r.action != RuleAction::Lookup {
            r.table = 0;
        }
        Ok(r.normalized())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip() {
        let rules = [
            Rule::new(Family::V4)
                .priority(20)
                .to("10.0.0.1/32".parse().unwrap()),
            Rule::new(Family::V4)
                .priority(30)
                .from("10.0.0.1/32".parse().unwrap())
                .to("10.0.0.0/16".parse().unwrap())
                .table(92),
            Rule::new(Family::V6)
                .priority(100)
                .mark(0xa00, 0xf00)
                .table(2004),
            Rule::new(Family::V6)
                .priority(5)
                .to("fd00::/64".parse().unwrap())
                .invert(true),
            Rule::new(Family::V4)
                .mark(7, u32::MAX)
                .protocol(Protocol::KERNEL)
                .table(1000),
            Rule::new(Family::V4)
                .priority(9)
                .action(RuleAction::Blackhole),
            Rule::new(Family::V4)
                .priority(9)
                .action(RuleAction::Goto(100)),
        ];
        for r in rules {
            let r = r.normalized();
            let t = r.to_string();
            assert_eq!(t.parse::<Rule>().unwrap(), r, "{t}");
            assert_eq!(r.to_ip_command().parse::<Rule>().unwrap(), r);
        }
    }

    #[test]
    fn display_is_ip_rule_text() {
        let r = Rule::new(Family::V4)
            .priority(20)
            .to("192.168.105.44/32".parse().unwrap());
        assert_eq!(
            r.to_string(),
            "priority 20 from all to 192.168.105.44 lookup main"
        );
        let r = Rule::new(Family::V4)
            .priority(1)
            .mark(0x200, 0xf00)
            .table(2005);
        assert_eq!(
            r.to_string(),
            "priority 1 from all fwmark 0x200/0xf00 lookup 2005"
        );
    }

    #[test]
    fn family_mixes_are_refused_and_wildcards_take_the_family() {
        // Fuzzing found these: a V6 rule with a V4 destination, and
        // `from default` in an IPv6 rule parsed as IPv4.
        assert!("to 1.1.2.1 from ::/0".parse::<Rule>().is_err());
        assert!("from 10.0.0.0/8 to fd00::/64".parse::<Rule>().is_err());
        assert!("ip -6 rule add to 10.0.0.0/8".parse::<Rule>().is_err());
        let r: Rule = "ip -6 rule add from default to fd00::/64 lookup 5"
            .parse()
            .unwrap();
        assert_eq!(r.family, Family::V6);
        assert_eq!(r.to, Some("fd00::/64".parse().unwrap()));
        let r: Rule = "ip -6 rule add from default lookup 5".parse().unwrap();
        assert_eq!(r.family, Family::V6);
        assert_eq!(r.to_string().parse::<Rule>().unwrap(), r);
        let r: Rule = "from ::/0 lookup 5".parse().unwrap();
        assert_eq!((r.family, r.from), (Family::V6, None));
    }

    #[test]
    fn validation() {
        let mut r = Rule::new(Family::V6).to("10.0.0.0/8".parse().unwrap());
        r.family = Family::V6;
        assert!(r.validate(Op::ReplaceRule).is_err());
        let r = Rule::new(Family::V4).to("10.0.0.1/8".parse().unwrap());
        assert!(r.validate(Op::ReplaceRule).is_err());
        let r = Rule::new(Family::V4).table(0);
        assert!(r.validate(Op::ReplaceRule).is_err());
    }
}
