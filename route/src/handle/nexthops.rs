//! Nexthop object operations of [`Handle`] (`ip nexthop`): add, replace
//! (idempotent), delete, get and list.

use super::*;
use crate::error::{Op, Result};
use crate::nexthop::{self, DecodedNexthop, Nexthop};
use crate::nl::{Conn, NlError};

impl Handle {
    /// Adds nexthop object `nh` (`ip nexthop add`); an object of that id
    /// already there is an error for which
    /// [`Error::is_exists`](crate::Error::is_exists) is true.
    ///
    /// ```no_run
    /// use podnet_route::{Handle, Nexthop, Route};
    /// let h = Handle::new()?;
    /// h.add_nexthop(&Nexthop::new(10).via("10.0.0.2".parse().unwrap()).dev("eth0"))?;
    /// h.upsert(&Route::new("10.9.0.0/16".parse().unwrap()).nhid(10), None)?;
    /// # Ok::<(), podnet_route::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `Error::InvalidInput` for an object [`Nexthop::validate`] refuses
    /// (nothing sent), `Error::UnknownDevice`, `Error::Kernel` (EEXIST, or
    /// the kernel's refusal: a member that does not exist, a device that
    /// is down ...).
    pub fn add_nexthop(&self, nh: &Nexthop) -> Result<()> {
        nh.validate(Op::AddNexthopObject)?;
        let mut c = lock(&self.conn);
        let oif = self.nexthop_oif(&mut c, nh, Op::AddNexthopObject)?;
        c.ack(
            nexthop::RTM_NEWNEXTHOP,
            nl::NLM_F_CREATE | nl::NLM_F_EXCL,
            &nexthop::nexthop_new(nh, oif),
        )
        .map_err(|e| kernel(Op::AddNexthopObject, nh, e))
    }

    /// Creates or replaces nexthop object `nh` (`ip nexthop replace`) and
    /// returns whether anything changed: an object of that id already as
    /// given is left alone (`false`, nothing sent). Replacing an object
    /// moves every route that refers to it at once; the kernel refuses to
    /// turn a group into a single nexthop or back.
    ///
    /// # Errors
    ///
    /// As [`Handle::add_nexthop`], without EEXIST;
    /// [`Error::Unmodelled`](crate::Error::Unmodelled) for an object with
    /// encapsulation, `fdb` or a resilient group (left as it is).
    pub fn replace_nexthop(&self, nh: &Nexthop) -> Result<bool> {
        nh.validate(Op::ReplaceNexthopObject)?;
        let mut c = lock(&self.conn);
        let oif = self.nexthop_oif(&mut c, nh, Op::ReplaceNexthopObject)?;
        let old = self
            .get_nexthop_locked(&mut c, nh.id)
            .map_err(|e| kernel(Op::ReplaceNexthopObject, nh, e))?;
        if let Some(d) = old {
            let mut want = nh.clone();
            want.device = None;
            if d.complex {
                return Err(crate::Error::Unmodelled {
                    op: Op::ReplaceNexthopObject,
                    object: nh.to_string(),
                    existing: self.named_nexthop(&mut c, d).to_string(),
                    what: "encapsulation, fdb or a resilient group".into(),
                });
            }
            if d.oif == oif && d.nexthop == want {
                return Ok(false);
            }
        }
        c.ack(
            nexthop::RTM_NEWNEXTHOP,
            nl::NLM_F_CREATE | nl::NLM_F_REPLACE,
            &nexthop::nexthop_new(nh, oif),
        )
        .map_err(|e| kernel(Op::ReplaceNexthopObject, nh, e))?;
        Ok(true)
    }

    /// Deletes nexthop object `id` (`ip nexthop del id ID`); the kernel
    /// removes the routes that refer to it, and drops it from the groups
    /// it is a member of. An object that is not there gives an error for
    /// which [`Error::is_not_found`](crate::Error::is_not_found) is true.
    ///
    /// # Errors
    ///
    /// `Error::Kernel` (ENOENT when there is no such object).
    pub fn delete_nexthop(&self, id: u32) -> Result<()> {
        let mut c = lock(&self.conn);
        c.ack(nexthop::RTM_DELNEXTHOP, 0, &nexthop::nexthop_id(id))
            .map_err(|e| kernel(Op::DeleteNexthopObject, &format_args!("id {id}"), e))
    }

    /// Nexthop object `id`, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// `Error::Kernel` or `Error::Decode` when the kernel cannot answer.
    pub fn nexthop(&self, id: u32) -> Result<Option<Nexthop>> {
        let mut c = lock(&self.conn);
        let d = self
            .get_nexthop_locked(&mut c, id)
            .map_err(|e| kernel(Op::ListNexthopObjects, &format_args!("id {id}"), e))?;
        Ok(d.map(|d| self.named_nexthop(&mut c, d)))
    }

    /// Every nexthop object, in the kernel's order (by id), as `ip
    /// nexthop show` lists them.
    ///
    /// # Errors
    ///
    /// `Error::Kernel`, `Error::Decode` or `Error::DumpInterrupted` when
    /// the dump fails.
    pub fn nexthops(&self) -> Result<Vec<Nexthop>> {
        let mut c = lock(&self.conn);
        let all = dump_retrying(
            &mut c,
            nexthop::RTM_GETNEXTHOP,
            &nexthop::nexthop_dump(),
            nexthop::RTM_NEWNEXTHOP,
            |p, out| {
                out.extend(nexthop::decode_nexthop(p)?);
                Ok(())
            },
        )
        .map_err(|e| kernel(Op::ListNexthopObjects, &"all", e))?;
        Ok(all
            .into_iter()
            .map(|d| self.named_nexthop(&mut c, d))
            .collect())
    }

    fn nexthop_oif(&self, c: &mut Conn, nh: &Nexthop, op: Op) -> Result<Option<u32>> {
        nh.device
            .as_deref()
            .map(|d| self.dev_index(c, d, false, op, nh))
            .transpose()
    }

    pub(crate) fn named_nexthop(&self, c: &mut Conn, d: DecodedNexthop) -> Nexthop {
        let mut n = d.nexthop;
        n.device = d.oif.and_then(|i| self.name_of(c, i));
        n
    }

    pub(crate) fn get_nexthop_locked(
        &self,
        c: &mut Conn,
        id: u32,
    ) -> std::result::Result<Option<DecodedNexthop>, NlError> {
        match c.get(
            nexthop::RTM_GETNEXTHOP,
            &nexthop::nexthop_id(id),
            nexthop::RTM_NEWNEXTHOP,
            nexthop::decode_nexthop,
        ) {
            Ok(d) => Ok(d),
            Err(NlError::Kernel { errno, .. }) if errno == libc::ENOENT => Ok(None),
            Err(e) => Err(e),
        }
    }
}
