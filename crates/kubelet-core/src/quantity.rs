//! Kubernetes resource quantities (`resource.Quantity`), enough to compare and format them.

use thiserror::Error;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parses a quantity into thousandths of its unit ("100m" -> 100, "1Ki" -> 1_024_000).
/// Values are exact for everything a pod spec can sensibly carry.
pub fn parse_milli(s: &str) -> Result<i128, QuantityError> {
    let err = || QuantityError(s.to_string());
    let s = s.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() {
        return Err(err());
    }
    // (multiplier numerator, denominator), applied to the milli value.
    const DECIMAL: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let power = |names: &[&str], base: i128| {
        let i = names.iter().position(|n| *n == suffix)?;
        Some(1000 * base.pow(i as u32 + 1))
    };
    let scaled = power(&DECIMAL, 1000).or_else(|| power(&BINARY, 1024));
    let (mul, div): (i128, i128) = match (suffix, scaled) {
        (_, Some(m)) => (m, 1),
        ("", _) => (1000, 1),
        ("m", _) => (1, 1),
        ("n", _) => (1, 1_000_000),
        ("u", _) => (1, 1000),
        (e, _) if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().map_err(|_| err())?;
            if !(0..=18).contains(&exp) {
                return Err(err());
            }
            (1000 * 10i128.pow(exp as u32), 1)
        }
        _ => return Err(err()),
    };
    let (neg, digits) = match num.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, num.strip_prefix('+').unwrap_or(num)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err());
    }
    if !int_part.chars().all(|c| c.is_ascii_digit())
        || !frac_part.chars().all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let int: i128 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| err())?
    };
    let frac_digits = frac_part.len().min(18) as u32;
    let frac: i128 = if frac_digits == 0 {
        0
    } else {
        frac_part[..frac_digits as usize]
            .parse()
            .map_err(|_| err())?
    };
    let scale = 10i128.pow(frac_digits);
    let total = int
        .checked_mul(scale)
        .and_then(|v| v.checked_add(frac))
        .and_then(|v| v.checked_mul(mul))
        .ok_or_else(err)?;
    // Round up, as Quantity.MilliValue does for sub-milli precision.
    let denom = scale * div;
    let v = (total + denom - 1) / denom;
    Ok(if neg { -v } else { v })
}

/// Formats a byte count the way `resource.Quantity` prints a BinarySI value: the largest
/// binary suffix that divides it exactly ("1024" -> "1Ki", "1536" -> "1536").
pub fn format_binary_si(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    let units = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut v = bytes;
    let mut i = 0;
    while v.is_multiple_of(1024) && i + 1 < units.len() {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", units[i])
}

/// Formats thousandths as a DecimalSI quantity prints them: whole units bare ("2"), the
/// rest in milli ("1900m").
pub fn format_milli(milli: u64) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Formats a plain decimal count ("2", "110").
pub fn format_decimal(v: u64) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes() {
        assert_eq!(parse_milli("100m"), Ok(100));
        assert_eq!(parse_milli("1"), Ok(1000));
        assert_eq!(parse_milli("0.5"), Ok(500));
        assert_eq!(parse_milli("1Ki"), Ok(1_024_000));
        assert_eq!(parse_milli("64Mi"), Ok(64 * 1024 * 1024 * 1000));
        assert_eq!(parse_milli("1G"), Ok(1_000_000_000_000));
        assert_eq!(parse_milli("1e3"), Ok(1_000_000));
        assert_eq!(parse_milli("-2"), Ok(-2000));
        assert!(parse_milli("abc").is_err());
        assert!(parse_milli("1Xi").is_err());
        assert!(parse_milli("").is_err());
        assert!(parse_milli(".").is_err());
    }

    #[test]
    fn every_power_suffix() {
        for (i, (dec, bin)) in ["k", "M", "G", "T", "P", "E"]
            .iter()
            .zip(["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
            .enumerate()
        {
            let n = i as u32 + 1;
            assert_eq!(
                parse_milli(&format!("2{dec}")),
                Ok(2000 * 1000i128.pow(n)),
                "{dec}"
            );
            assert_eq!(
                parse_milli(&format!("2{bin}")),
                Ok(2000 * 1024i128.pow(n)),
                "{bin}"
            );
        }
        assert_eq!(
            parse_milli("5n"),
            Ok(1),
            "rounds up, as upstream's MilliValue"
        );
        assert_eq!(parse_milli("1000u"), Ok(1));
        assert!(
            parse_milli("1e19").is_err(),
            "exponents beyond 18 are refused"
        );
        assert!(parse_milli("1k1").is_err());
    }

    #[test]
    fn formats_binary() {
        assert_eq!(format_binary_si(1024), "1Ki");
        assert_eq!(format_binary_si(100 * 1024 * 1024), "100Mi");
        assert_eq!(format_binary_si(1536), "1536");
        assert_eq!(format_binary_si(24_634_484 * 1024), "24634484Ki");
    }
}
