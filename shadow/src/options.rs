//! The command line: where pg_kafka's Kafka listener and its Postgres are, and the few
//! knobs of forwarding. The external clusters' settings are not here: they are per topic,
//! in `kafka.shadow_topics`.

use std::time::Duration;

pub const USAGE: &str = "usage: pg_kafka_shadow --postgres CONNINFO --source HOST:PORT[,HOST:PORT...]
           [--source-property NAME=VALUE]... [--metrics HOST:PORT]
           [--batch-messages N] [--batch-ms MS] [--refresh-ms MS]

  --postgres         libpq connection string of the database pg_kafka serves (its role reads
                     kafka.shadow_topics and writes kafka.shadow_progress)
  --source           pg_kafka's Kafka listeners (every node of a replicated cluster)
  --source-property  a librdkafka setting for reading pg_kafka (security.protocol, sasl.*)
  --metrics          serve Prometheus metrics on this address
  --batch-messages   messages per transaction at most (50000)
  --batch-ms         how long a transaction gathers messages at most (500)
  --refresh-ms       how often kafka.shadow_topics is read and progress recorded (2000)";

#[derive(Clone, Debug)]
pub struct Options {
    pub postgres: String,
    pub source_bootstrap: String,
    pub source_properties: Vec<(String, String)>,
    pub metrics: Option<String>,
    pub batch_messages: usize,
    pub batch_wait: Duration,
    pub refresh: Duration,
}

impl Options {
    pub fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
        let mut options = Options {
            postgres: String::new(),
            source_bootstrap: String::new(),
            source_properties: Vec::new(),
            metrics: None,
            batch_messages: 50_000,
            batch_wait: Duration::from_millis(500),
            refresh: Duration::from_millis(2_000),
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--postgres" => options.postgres = value()?,
                "--source" => options.source_bootstrap = value()?,
                "--source-property" => {
                    let pair = value()?;
                    let (name, setting) = pair.split_once('=').ok_or_else(|| format!("--source-property {pair}: NAME=VALUE"))?;
                    options.source_properties.push((name.to_owned(), setting.to_owned()));
                }
                "--metrics" => options.metrics = Some(value()?),
                "--batch-messages" => options.batch_messages = number(&flag, &value()?, 1, 1_000_000)? as usize,
                "--batch-ms" => options.batch_wait = Duration::from_millis(number(&flag, &value()?, 1, 60_000)?),
                "--refresh-ms" => options.refresh = Duration::from_millis(number(&flag, &value()?, 10, 3_600_000)?),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if options.postgres.is_empty() || options.source_bootstrap.is_empty() {
            return Err("--postgres and --source are required".into());
        }
        Ok(options)
    }

    /// The connection string without its password, for the log.
    pub fn redacted_postgres(&self) -> String {
        self.postgres
            .split_whitespace()
            .map(|part| if part.starts_with("password=") { "password=***" } else { part })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn number(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("{flag} {text}: a whole number from {min} to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().map(|a| a.to_string()))
    }

    #[test]
    fn flags_are_read_and_bounded() {
        let options = parse(&[
            "--postgres",
            "host=h password=secret",
            "--source",
            "a:1",
            "--source-property",
            "security.protocol=SSL",
            "--batch-ms",
            "5",
        ])
        .unwrap();
        assert_eq!(options.source_properties, vec![("security.protocol".to_owned(), "SSL".to_owned())]);
        assert_eq!(options.batch_wait, Duration::from_millis(5));
        assert_eq!(options.redacted_postgres(), "host=h password=***");
        assert!(parse(&["--postgres", "x", "--source", "a:1", "--batch-messages", "0"]).is_err());
        assert!(parse(&["--postgres", "x"]).is_err());
        assert!(parse(&["--postgres", "x", "--source", "a:1", "--source-property", "novalue"]).is_err());
        assert!(parse(&["--postgres", "x", "--source", "a:1", "--bogus"]).is_err());
    }
}
