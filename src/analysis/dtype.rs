//! pandas' dtypes as a type: the six every reader that types values itself (delimited text,
//! workbooks, JSON) gives, by their pandas names, and the polars type each is read as.
//! Parquet and Arrow columns keep their own pandas names (`int32`, `category`, zoned
//! times…), so a profile holds a dtype's name; [`Dtype::of`] reads it.

use std::fmt;

use polars::prelude::{DataType, TimeUnit};

/// A pandas dtype this service gives a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    Int64,
    UInt64,
    Float64,
    Bool,
    /// `datetime64[ns]`, without a zone.
    Datetime,
    /// Text, mixed values, and any dtype read as text.
    Object,
}

impl Dtype {
    /// pandas' name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Int64 => "int64",
            Dtype::UInt64 => "uint64",
            Dtype::Float64 => "float64",
            Dtype::Bool => "bool",
            Dtype::Datetime => "datetime64[ns]",
            Dtype::Object => "object",
        }
    }

    /// The dtype a column whose profile names `name` is read as: one of these six, and
    /// text for every other name.
    pub fn of(name: &str) -> Dtype {
        name.parse().unwrap_or(Dtype::Object)
    }

    /// The polars type its values are stored as.
    pub fn polars_type(self) -> DataType {
        match self {
            Dtype::Int64 => DataType::Int64,
            Dtype::UInt64 => DataType::UInt64,
            Dtype::Float64 => DataType::Float64,
            Dtype::Bool => DataType::Boolean,
            Dtype::Datetime => DataType::Datetime(TimeUnit::Nanoseconds, None),
            Dtype::Object => DataType::String,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not one of the six dtypes.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not one of this service's dtypes")]
pub struct UnknownDtype(String);

impl std::str::FromStr for Dtype {
    type Err = UnknownDtype;

    fn from_str(name: &str) -> Result<Dtype, UnknownDtype> {
        [
            Dtype::Int64,
            Dtype::UInt64,
            Dtype::Float64,
            Dtype::Bool,
            Dtype::Datetime,
            Dtype::Object,
        ]
        .into_iter()
        .find(|d| d.as_str() == name)
        .ok_or_else(|| UnknownDtype(name.to_string()))
    }
}

impl serde::Serialize for Dtype {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// pandas' text for a boolean, as previews and statistics show it.
pub fn bool_text(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_are_named_as_pandas_names_them() {
        for d in [Dtype::Int64, Dtype::Float64, Dtype::Datetime, Dtype::Object] {
            assert_eq!(Dtype::of(d.as_str()), d);
            assert_eq!(d.to_string(), d.as_str());
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        assert_eq!(Dtype::of("datetime64[ns]"), Dtype::Datetime);
        assert_eq!(Dtype::of("int32"), Dtype::Object);
        assert!("category".parse::<Dtype>().is_err());
        assert_eq!(Dtype::Bool.polars_type(), DataType::Boolean);
    }
}
