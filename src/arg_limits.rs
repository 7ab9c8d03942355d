//! The kernel's limits on what execve(2) copies of a process's argv and env, checked before runc
//! runs.
//!
//! A process spec whose strings break these limits is accepted by runc and fails only inside
//! `runc init`, at execve, as E2BIG: a started exec that dies at once, or a create that fails
//! after the container's namespaces and cgroup were set up. Checking here turns that into an
//! INVALID_ARGUMENT for the request that carried the spec.
//!
//! The rules are those of fs/exec.c (`bprm_stack_limits`, `copy_strings`):
//! - each string, with its NUL, is at most MAX_ARG_STRLEN = 32 pages;
//! - all strings with their NULs, plus one pointer per string, fit in a quarter of the stack
//!   limit (RLIMIT_STACK soft), capped at 3/4 of `_STK_LIM` (6 MiB) and never below 32 pages.
//!
//! The path of the binary, which the kernel copies too, is not counted (runc resolves it inside
//! the container): the check can let a request through that execve then refuses by a few
//! bytes, but never refuses one that execve would take.

use serde::Deserialize;

/// `_STK_LIM`: the kernel's default stack limit, 8 MiB.
const STK_LIM: u64 = 8 << 20;
/// What a pointer in argv or envp costs on the stack.
const POINTER: u64 = std::mem::size_of::<usize>() as u64;
/// MAX_ARG_STRLEN and ARG_MAX, in pages.
const ARG_PAGES: u64 = 32;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TooBig {
    #[error(
        "{list}[{index}] is {len} bytes with its NUL, over the kernel's limit of {max} bytes \
         per argument or environment string (MAX_ARG_STRLEN)"
    )]
    String {
        list: &'static str,
        index: usize,
        len: u64,
        max: u64,
    },
    #[error(
        "args and env take {total} bytes ({strings} of strings with their NULs, {pointers} \
         of pointers), over the {limit} bytes execve allows with a stack limit of {stack}"
    )]
    Total {
        total: u64,
        strings: u64,
        pointers: u64,
        limit: u64,
        stack: String,
    },
}

/// Checks `args` and `env` against execve's limits, for a stack limit (RLIMIT_STACK soft, in
/// bytes; `u64::MAX` is unlimited) and a page size.
pub fn check(args: &[String], env: &[String], stack_soft: u64, page: u64) -> Result<(), TooBig> {
    let max_string = ARG_PAGES * page;
    let lists = [("args", args), ("env", env)];
    for (list, strings) in lists {
        for (index, s) in strings.iter().enumerate() {
            let len = s.len() as u64 + 1;
            if len > max_string {
                return Err(TooBig::String {
                    list,
                    index,
                    len,
                    max: max_string,
                });
            }
        }
    }
    let limit = (STK_LIM / 4 * 3).min(stack_soft / 4).max(ARG_PAGES * page);
    let strings: u64 = args.iter().chain(env).map(|s| s.len() as u64 + 1).sum();
    // An empty argv still gets one pointer: the kernel makes room for an empty argv[0].
    let pointers = (args.len().max(1) + env.len()) as u64 * POINTER;
    let total = strings + pointers;
    if total > limit {
        return Err(TooBig::Total {
            total,
            strings,
            pointers,
            limit,
            stack: if stack_soft == u64::MAX {
                "unlimited".into()
            } else {
                format!("{stack_soft} bytes")
            },
        });
    }
    Ok(())
}

/// Checks a process that runc will start from this shim: `spec_stack` is the RLIMIT_STACK soft
/// value of the spec's `process.rlimits` (runc sets it before execve), else the shim's own
/// applies, which runc and `runc init` inherit.
pub fn check_process(
    args: &[String],
    env: &[String],
    spec_stack: Option<u64>,
) -> Result<(), TooBig> {
    let stack = spec_stack.unwrap_or_else(own_stack_limit);
    check(args, env, stack, page_size())
}

/// The part of an OCI process spec (JSON) the check reads.
#[derive(Deserialize)]
struct ProcessStrings {
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    #[serde(default)]
    rlimits: Vec<Rlimit>,
}

#[derive(Deserialize)]
struct Rlimit {
    #[serde(rename = "type", default)]
    typ: String,
    #[serde(default)]
    soft: u64,
}

/// Checks the process spec of an Exec (OCI `Process`, JSON). A spec that does not parse as one
/// is left to runc, which reports what is wrong with it.
pub fn check_process_json(spec: &[u8]) -> Result<(), TooBig> {
    let Ok(p) = serde_json::from_slice::<ProcessStrings>(spec) else {
        return Ok(());
    };
    let stack = p
        .rlimits
        .iter()
        .find(|r| r.typ == "RLIMIT_STACK")
        .map(|r| r.soft);
    check_process(&p.args, &p.env, stack)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096)
}

fn own_stack_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into `r`, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut r) } != 0 {
        // The kernel's default, which is also what most processes run with.
        return STK_LIM;
    }
    r.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;
    const MIB: u64 = 1 << 20;

    fn s(len: usize) -> String {
        "A".repeat(len)
    }

    #[test]
    fn one_string_up_to_32_pages_with_its_nul() {
        let max = (32 * PAGE) as usize;
        assert_eq!(check(&[s(max - 1)], &[], 8 * MIB, PAGE), Ok(()));
        assert_eq!(
            check(&["sh".into()], &["PATH=/bin".into(), s(max)], 8 * MIB, PAGE),
            Err(TooBig::String {
                list: "env",
                index: 1,
                len: max as u64 + 1,
                max: max as u64,
            })
        );
        // A string too long is refused even when the stack would hold it.
        assert!(matches!(
            check(&[s(1 << 20)], &[], u64::MAX, PAGE),
            Err(TooBig::String { list: "args", .. })
        ));
    }

    #[test]
    fn total_is_a_quarter_of_the_stack_at_most_6_mib() {
        // 8 MiB stack: 2 MiB for strings and pointers. 20 strings of 100,000 bytes fit
        // (2,000,020 + 160); 21 do not.
        let twenty: Vec<String> = (0..20).map(|_| s(99_999)).collect();
        assert_eq!(check(&twenty, &[], 8 * MIB, PAGE), Ok(()));
        let mut more = twenty.clone();
        more.extend((0..2).map(|_| s(99_999)));
        let Err(TooBig::Total {
            total,
            strings,
            pointers,
            limit,
            ..
        }) = check(&more, &[], 8 * MIB, PAGE)
        else {
            panic!("22 strings of 100,000 bytes passed");
        };
        assert_eq!((strings, pointers, limit), (2_200_000, 176, 2 * MIB));
        assert_eq!(total, strings + pointers);
        // Huge or unlimited stacks stop at 6 MiB: 60 strings of 100,000 bytes fit, 70 do not.
        let sixty: Vec<String> = (0..60).map(|_| s(99_999)).collect();
        assert_eq!(check(&sixty, &[], 64 * MIB, PAGE), Ok(()));
        let seventy: Vec<String> = (0..70).map(|_| s(99_999)).collect();
        for stack in [64 * MIB, u64::MAX] {
            assert!(matches!(
                check(&seventy, &[], stack, PAGE),
                Err(TooBig::Total { limit, .. }) if limit == 6 * MIB
            ));
        }
    }

    #[test]
    fn pointers_count() {
        // Many tiny strings: 300,000 one-byte arguments take 600,000 bytes of strings but
        // 2.4 MB of pointers, over a 2 MiB limit.
        let many: Vec<String> = (0..300_000).map(|_| "a".to_string()).collect();
        assert!(matches!(
            check(&many, &[], 8 * MIB, PAGE),
            Err(TooBig::Total {
                pointers: 2_400_000,
                ..
            })
        ));
    }

    #[test]
    fn small_stacks_still_get_32_pages() {
        // A 64 KiB stack would allow 16 KiB; the kernel keeps 128 KiB.
        let args: Vec<String> = (0..10).map(|_| s(10_000)).collect();
        assert_eq!(check(&args, &[], 64 << 10, PAGE), Ok(()));
        let args: Vec<String> = (0..14).map(|_| s(10_000)).collect();
        assert!(matches!(
            check(&args, &[], 64 << 10, PAGE),
            Err(TooBig::Total { limit: 131_072, .. })
        ));
    }

    #[test]
    fn spec_json_uses_its_own_stack_limit() {
        // 1.5 MB of env: fits a quarter of 8 MiB, not a quarter of 4 MiB.
        let env: Vec<String> = (0..15).map(|_| s(99_999)).collect();
        let spec = |stack: Option<u64>| {
            let rlimits = stack.map_or(String::new(), |s| {
                format!(r#","rlimits":[{{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024}},{{"type":"RLIMIT_STACK","hard":{s},"soft":{s}}}]"#)
            });
            format!(
                r#"{{"args":["true"],"env":{},"cwd":"/"{rlimits}}}"#,
                serde_json::to_string(&env).unwrap_or_default()
            )
        };
        assert_eq!(check_process_json(spec(Some(8 * MIB)).as_bytes()), Ok(()));
        assert!(matches!(
            check_process_json(spec(Some(4 * MIB)).as_bytes()),
            Err(TooBig::Total { limit, .. }) if limit == MIB
        ));
    }

    #[test]
    fn unparsable_spec_is_left_to_runc() {
        assert_eq!(check_process_json(b"not json"), Ok(()));
        assert_eq!(check_process_json(br#"{"args":[1,2]}"#), Ok(()));
        assert_eq!(check_process_json(b"{}"), Ok(()));
    }

    #[test]
    fn message_names_the_sizes() {
        let e = check(&[s(200_000)], &[], 8 * MIB, PAGE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "args[0] is 200001 bytes with its NUL, over the kernel's limit of 131072 bytes per \
             argument or environment string (MAX_ARG_STRLEN)"
        );
    }
}
