//! Quantities written the nginx way: sizes (`10m`), durations (`30s`), rates (`10r/s`).

use std::fmt;

use super::ValueError;

fn split_number(input: &str) -> Option<(u64, &str)> {
    let digits = input.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 12 {
        return None;
    }
    let n = input[..digits].parse().ok()?;
    Some((n, &input[digits..]))
}

macro_rules! quantity_serde {
    ($ty:ident) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as ::serde::Deserialize>::deserialize(d)?;
                Self::parse(&s).map_err(|e| <D::Error as ::serde::de::Error>::custom(format!("{s:?} {e}")))
            }
        }
        impl ::std::str::FromStr for $ty {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

/// A size in bytes as nginx writes it: a number with an optional `k`, `m` or `g`
/// suffix (`512k`, `10m`, `1g`), at most 64 GiB.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Size {
    number: u64,
    unit: u8,
}

impl Size {
    /// Parse `10m`-style sizes.
    ///
    /// ```
    /// # use rpcc_core::value::Size;
    /// assert_eq!(Size::parse("10m").unwrap().bytes(), 10 * 1024 * 1024);
    /// assert!(Size::parse("10 MB").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        const HELP: &str = "is not a size (a number with an optional k, m or g suffix, e.g. 10m)";
        let (number, suffix) = split_number(input).ok_or_else(|| ValueError::new(HELP))?;
        let unit = match suffix {
            "" => b' ',
            "k" | "K" => b'k',
            "m" | "M" => b'm',
            "g" | "G" => b'g',
            _ => return Err(ValueError::new(HELP)),
        };
        let size = Self { number, unit };
        if size.bytes() > 64 << 30 {
            return Err(ValueError::new("is larger than 64g"));
        }
        Ok(size)
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        let mult = match self.unit {
            b'k' => 1 << 10,
            b'm' => 1 << 20,
            b'g' => 1 << 30,
            _ => 1,
        };
        self.number.saturating_mul(mult)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            b' ' => write!(f, "{}", self.number),
            u => write!(f, "{}{}", self.number, u as char),
        }
    }
}
quantity_serde!(Size);

/// A duration as nginx writes it: a number and one unit of `ms`, `s`, `m`, `h`, `d`
/// (`500ms`, `30s`, `5m`), from 1 ms up to 365 days.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct DurationValue {
    number: u64,
    unit: &'static str,
}

impl DurationValue {
    /// Parse `30s`-style durations.
    ///
    /// ```
    /// # use rpcc_core::value::DurationValue;
    /// assert_eq!(DurationValue::parse("5m").unwrap().as_duration().as_secs(), 300);
    /// assert!(DurationValue::parse("5").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        const HELP: &str = "is not a duration (a number and a unit of ms, s, m, h or d, e.g. 30s)";
        let (number, suffix) = split_number(input).ok_or_else(|| ValueError::new(HELP))?;
        let unit = match suffix {
            "ms" => "ms",
            "s" => "s",
            "m" => "m",
            "h" => "h",
            "d" => "d",
            _ => return Err(ValueError::new(HELP)),
        };
        let d = Self { number, unit };
        if number == 0 {
            return Err(ValueError::new("must be longer than zero"));
        }
        if d.as_duration() > std::time::Duration::from_secs(365 * 86_400) {
            return Err(ValueError::new("is longer than 365 days"));
        }
        Ok(d)
    }

    /// Build from whole seconds (must be ≥ 1).
    pub fn from_secs(secs: u64) -> Result<Self, ValueError> {
        Self::parse(&format!("{secs}s"))
    }

    /// A literal number of seconds for built-in defaults (1 ≤ secs ≤ 86400).
    pub(crate) const fn secs(secs: u64) -> Self {
        assert!(secs >= 1 && secs <= 86_400);
        Self { number: secs, unit: "s" }
    }

    /// `n` times this duration, in the same unit (saturating; for built-in defaults).
    pub(crate) const fn times(self, n: u64) -> Self {
        Self { number: self.number.saturating_mul(n), unit: self.unit }
    }

    /// As a `std::time::Duration`.
    pub fn as_duration(self) -> std::time::Duration {
        let ms = match self.unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => 86_400_000,
        };
        std::time::Duration::from_millis(self.number.saturating_mul(ms))
    }
}

impl fmt::Display for DurationValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.number, self.unit)
    }
}
quantity_serde!(DurationValue);

/// The time unit of a request rate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum RateUnit {
    /// requests per second (`r/s`)
    PerSecond,
    /// requests per minute (`r/m`)
    PerMinute,
}

/// A request rate for `limit_req_zone`: `10r/s` or `5r/m`, from 1 to 100000.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Rate {
    requests: u32,
    unit: RateUnit,
}

impl Rate {
    /// Parse `10r/s` or `5r/m`.
    ///
    /// ```
    /// # use rpcc_core::value::Rate;
    /// assert_eq!(Rate::parse("10r/s").unwrap().to_string(), "10r/s");
    /// assert!(Rate::parse("10/s").is_err());
    /// ```
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        const HELP: &str = "is not a rate (requests per second or minute, e.g. 10r/s or 5r/m, 1-100000)";
        let (number, suffix) = split_number(input).ok_or_else(|| ValueError::new(HELP))?;
        let unit = match suffix {
            "r/s" => RateUnit::PerSecond,
            "r/m" => RateUnit::PerMinute,
            _ => return Err(ValueError::new(HELP)),
        };
        let requests =
            u32::try_from(number).ok().filter(|n| (1..=100_000).contains(n)).ok_or_else(|| ValueError::new(HELP))?;
        Ok(Self { requests, unit })
    }

    /// Requests per unit.
    pub fn requests(self) -> u32 {
        self.requests
    }

    /// The unit.
    pub fn unit(self) -> RateUnit {
        self.unit
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = match self.unit {
            RateUnit::PerSecond => "r/s",
            RateUnit::PerMinute => "r/m",
        };
        write!(f, "{}{u}", self.requests)
    }
}
quantity_serde!(Rate);
