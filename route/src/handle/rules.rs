//! Rule operations of [`Handle`]: replace without duplicates, delete,
//! list, and the guard around the kernel's default rules.

use super::*;
use crate::codec::{self};
use crate::error::{Error, Op, Result};
use crate::nl::{self, Conn, NlError};
use crate::rule::{Family, Rule};

impl Handle {
    /// Adds a rule unless an identical one exists (`true` when added). The
    /// kernel ignores `NLM_F_REPLACE` for rules and would add duplicates, so
    /// this adds with `NLM_F_EXCL` and takes EEXIST as "present". After an
    /// add, stale variants (same priority and selector, other table, action
    /// or protocol) are removed. Give rules a priority: without one the
    /// kernel picks a new one on each add, and the rule is not idempotent.
    ///
    /// The kernel's default rules (`0: from all lookup local`, `32766: from
    /// all lookup main`, `32767: from all lookup default`) are never
    /// removed as stale variants: a rule at one of those priorities with
    /// the selector `from all` that is not that default rule is refused
    /// (typed error, nothing sent). [`Handle::replace_system_rule`] is the
    /// explicit way to replace one.
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for a rule [`Rule::validate`] refuses or one that
    /// would remove a default rule (nothing sent); `Error::Kernel` for the
    /// kernel's refusal.
    pub fn replace_rule(&self, rule: &Rule) -> Result<bool> {
        self.replace_rule_as(rule, false)
    }

    /// Like [`Handle::replace_rule`], for a rule that takes the place of
    /// one of the kernel's default rules (its priority, selector `from
    /// all`), which is removed: only for callers that mean exactly that.
    ///
    /// # Errors
    ///
    /// As [`Handle::replace_rule`], without the default-rule refusal.
    pub fn replace_system_rule(&self, rule: &Rule) -> Result<bool> {
        self.replace_rule_as(rule, true)
    }

    pub(crate) fn replace_rule_as(&self, rule: &Rule, system: bool) -> Result<bool> {
        rule.validate(Op::ReplaceRule)?;
        let rule = rule.clone().normalized();
        if !system {
            if let Some(sys) = rule.system_slot().filter(|s| *s != rule) {
                return Err(Error::InvalidInput {
                    op: Op::ReplaceRule,
                    object: rule.to_string(),
                    reason: format!(
                        "priority {} with selector `from all` is the kernel's default rule `{sys}`, which this would remove (use replace_system_rule to mean that)",
                        sys.priority.unwrap_or(0)
                    ),
                });
            }
        }
        let mut c = lock(&self.conn);
        match c.ack(
            nl::RTM_NEWRULE,
            nl::NLM_F_CREATE | nl::NLM_F_EXCL,
            &codec::rule_msg(&rule),
        ) {
            Ok(()) => {}
            Err(NlError::Kernel { errno, .. }) if errno == libc::EEXIST => return Ok(false),
            Err(e) => return Err(kernel(Op::ReplaceRule, &rule, e)),
        }
        if rule.priority.is_some() {
            let all = self
                .rules_locked(&mut c, Some(rule.family))
                .map_err(|e| kernel(Op::ReplaceRule, &rule, e))?;
            for (k, extra) in all {
                // A rule with selectors we do not model is someone else's;
                // a default rule goes only when asked for.
                let stale =
                    !extra && k != rule && (system || !k.is_system()) && k.same_selector(&rule);
                if stale {
                    c.ack(nl::RTM_DELRULE, 0, &codec::rule_msg(&k))
                        .map_err(|e| kernel(Op::DeleteRule, &k, e))?;
                }
            }
        }
        Ok(true)
    }

    /// Deletes a rule; a missing rule gives an error for which
    /// [`Error::is_not_found`] is true. The kernel deletes the first rule
    /// that matches what is given, so a rule that could match one of the
    /// kernel's default rules (selector `from all`, lookup local, main or
    /// default, at its priority or none) is refused (typed error, nothing
    /// sent); [`Handle::delete_system_rule`] is the explicit way.
    ///
    /// # Errors
    ///
    /// An error for which [`Error::is_not_found`] is true when no such rule is
    /// there; `Error::InvalidInput` for a bad rule or one that could match a
    /// default rule (nothing sent).
    pub fn delete_rule(&self, rule: &Rule) -> Result<()> {
        self.delete_rule_as(rule, false)
    }

    /// Like [`Handle::delete_rule`], also for one of the kernel's default
    /// rules: only for callers that mean exactly that.
    ///
    /// # Errors
    ///
    /// As [`Handle::delete_rule`], without the default-rule refusal.
    pub fn delete_system_rule(&self, rule: &Rule) -> Result<()> {
        self.delete_rule_as(rule, true)
    }

    pub(crate) fn delete_rule_as(&self, rule: &Rule, system: bool) -> Result<()> {
        rule.validate(Op::DeleteRule)?;
        let rule = rule.clone().normalized();
        if !system {
            if let Some(sys) = rule.matching_system_rule() {
                return Err(Error::InvalidInput {
                    op: Op::DeleteRule,
                    object: rule.to_string(),
                    reason: format!(
                        "this would delete the kernel's default rule `{sys}` (use delete_system_rule to mean that)"
                    ),
                });
            }
        }
        let mut c = lock(&self.conn);
        c.ack(nl::RTM_DELRULE, 0, &codec::rule_msg(&rule))
            .map_err(|e| kernel(Op::DeleteRule, &rule, e))
    }

    pub(crate) fn rules_locked(
        &self,
        c: &mut Conn,
        family: Option<Family>,
    ) -> std::result::Result<Vec<(Rule, bool)>, NlError> {
        let req = codec::rule_dump(family);
        dump_retrying(c, nl::RTM_GETRULE, &req, nl::RTM_NEWRULE, |p, out| {
            out.extend(codec::decode_rule_full(p)?);
            Ok(())
        })
    }

    /// Lists the rules of `family` (`None`: both), in the kernel's order.
    ///
    /// # Errors
    ///
    /// `Error::Kernel`, `Error::Decode` or `Error::DumpInterrupted` when the
    /// dump fails.
    pub fn list_rules(&self, family: Option<Family>) -> Result<Vec<Rule>> {
        let mut c = lock(&self.conn);
        self.rules_locked(&mut c, family)
            .map(|v| v.into_iter().map(|(r, _)| r).collect())
            .map_err(|e| kernel(Op::ListRules, &format!("{family:?}"), e))
    }
}
