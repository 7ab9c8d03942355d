//! [`EventWatcher`]: `ctr events` in the background, parsed into [`Event`]s as they arrive.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::cmd::poll;
use crate::harness::{TestEnv, CTR_TIMEOUT};

/// One line of `ctr events`: `<timestamp> <namespace> <topic> <json>`.
#[derive(Clone, Debug)]
pub struct Event {
    pub namespace: String,
    pub topic: String,
    pub payload: Value,
}

impl Event {
    /// Parses a `ctr events` line; the timestamp (Go's `time.Time` text) contains spaces, so
    /// the topic is the first field starting with `/`.
    pub fn parse(line: &str) -> Option<Event> {
        let fields: Vec<&str> = line.split(' ').collect();
        let t = fields.iter().position(|f| f.starts_with('/'))?;
        let namespace = fields.get(t.checked_sub(1)?)?.to_string();
        let json = fields[t + 1..].join(" ");
        let payload = if json.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(json.trim()).ok()?
        };
        Some(Event {
            namespace,
            topic: fields[t].to_string(),
            payload,
        })
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.payload.get(key).and_then(Value::as_str)
    }

    pub fn container_id(&self) -> Option<&str> {
        self.str_field("container_id")
    }

    /// `/tasks/exit`: the process that exited (the container id for the init process).
    pub fn id(&self) -> Option<&str> {
        self.str_field("id")
    }

    pub fn exec_id(&self) -> Option<&str> {
        self.str_field("exec_id")
    }

    /// `exit_status` (Go's JSON omits a zero).
    pub fn exit_status(&self) -> Option<u64> {
        match self.payload.get("exit_status") {
            Some(v) => v.as_u64(),
            None if self.topic == "/tasks/exit" || self.topic == "/tasks/delete" => Some(0),
            None => None,
        }
    }

    pub fn pid(&self) -> Option<u64> {
        self.payload.get("pid").and_then(Value::as_u64)
    }

    /// Short form for messages and order checks: `exit(c1/e1)`, `start(c1)`, ...
    pub fn short(&self) -> String {
        let topic = self.topic.trim_start_matches("/tasks/");
        let c = self.container_id().unwrap_or("?");
        match (self.topic.as_str(), self.exec_id(), self.id()) {
            ("/tasks/exit", _, Some(id)) if id != c => format!("{topic}({c}/{id})"),
            (_, Some(e), _) => format!("{topic}({c}/{e})"),
            _ => format!("{topic}({c})"),
        }
    }
}

/// `ctr events` running in the background, subscribed before [`EventWatcher::start`] returns.
pub struct EventWatcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    ns: String,
}

impl EventWatcher {
    /// Starts `ctr events` and returns once it provably receives events: it labels the
    /// namespace until the `/namespaces/update` of that label shows up.
    pub fn start(env: &TestEnv) -> EventWatcher {
        let mut cmd = env.ctr_cmd(&["events"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("start ctr events");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let out = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("events lock").push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_sink = Arc::clone(&stderr);
        let mut err = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_sink
                    .lock()
                    .expect("stderr lock")
                    .extend_from_slice(&buf[..n]);
            }
        });
        let mut watcher = EventWatcher {
            child,
            lines,
            stderr,
            ns: env.ns.clone(),
        };
        let mut n = 0;
        let subscribed = poll(Duration::from_secs(30), || {
            if let Ok(Some(status)) = watcher.child.try_wait() {
                panic!(
                    "ctr events exited ({status}) before subscribing: {}",
                    String::from_utf8_lossy(&watcher.stderr.lock().expect("stderr lock"))
                );
            }
            n += 1;
            let label = format!("sluice-events-probe={n}");
            env.ctr(&["namespaces", "label", &env.ns, &label], CTR_TIMEOUT)
                .expect_success("ctr namespaces label (events probe)");
            watcher
                .lines()
                .iter()
                .any(|l| l.contains("/namespaces/update"))
                .then_some(())
        });
        assert!(
            subscribed.is_some(),
            "ctr events never reported a /namespaces/update within 30s; it printed: {:?}",
            watcher.lines()
        );
        watcher
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("events lock").clone()
    }

    /// The `/tasks/...` events of this test's namespace so far, in arrival order.
    pub fn task_events(&self) -> Vec<Event> {
        self.lines()
            .iter()
            .filter_map(|l| Event::parse(l))
            .filter(|e| e.namespace == self.ns && e.topic.starts_with("/tasks/"))
            .collect()
    }

    /// The task events of container `id`.
    pub fn events_of(&self, id: &str) -> Vec<Event> {
        self.task_events()
            .into_iter()
            .filter(|e| e.container_id() == Some(id))
            .collect()
    }

    /// Waits until `pred` holds for some task event; returns it, or panics with all events.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Event {
        poll(timeout, || self.task_events().into_iter().find(|e| pred(e))).unwrap_or_else(|| {
            panic!(
                "no {what} event within {timeout:?}; ctr events printed:\n{}",
                self.lines().join("\n")
            )
        })
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Short forms ([`Event::short`]) of `events`, for order assertions and messages.
pub fn shorts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::short).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctr_event_lines() {
        let l = "2024-01-02 03:04:05.123456789 +0000 UTC ns1 /tasks/exit \
                 {\"container_id\":\"c1\",\"id\":\"e1\",\"pid\":42,\"exit_status\":3,\
                 \"exited_at\":\"2024-01-02T03:04:05Z\"}";
        let e = Event::parse(l).expect("parse");
        assert_eq!(e.namespace, "ns1");
        assert_eq!(e.topic, "/tasks/exit");
        assert_eq!(e.container_id(), Some("c1"));
        assert_eq!(e.id(), Some("e1"));
        assert_eq!(e.exit_status(), Some(3));
        assert_eq!(e.pid(), Some(42));
        assert_eq!(e.short(), "exit(c1/e1)");

        let l = "2024-01-02 03:04:05 +0000 UTC ns1 /tasks/exit \
                 {\"container_id\":\"c1\",\"id\":\"c1\",\"pid\":41,\"exited_at\":\"x\"}";
        let e = Event::parse(l).expect("parse");
        assert_eq!(e.exit_status(), Some(0));
        assert_eq!(e.short(), "exit(c1)");

        let l = "2024-01-02 03:04:05 +0000 UTC ns1 /tasks/exec-added \
                 {\"container_id\":\"c1\",\"exec_id\":\"e1\"}";
        assert_eq!(Event::parse(l).expect("parse").short(), "exec-added(c1/e1)");
        assert!(Event::parse("garbage").is_none());
    }
}
