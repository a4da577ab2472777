//! Unpacking: a serde `Deserializer` reading the form the module describes.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::*;

pub(super) struct Unpacker<'de> {
    pub(super) rest: &'de [u8],
    pub(super) table: &'static [&'static str],
}

impl<'de> Unpacker<'de> {
    fn byte(&mut self) -> Result<u8, Error> {
        let (&byte, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| Error("unexpected end of the packed value".into()))?;
        self.rest = rest;
        Ok(byte)
    }

    fn peek(&self) -> Result<u8, Error> {
        self.rest
            .first()
            .copied()
            .ok_or_else(|| Error("unexpected end of the packed value".into()))
    }

    fn varint(&mut self) -> Result<u64, Error> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            n |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(Error("varint longer than 64 bits".into()))
    }

    fn slice(&mut self, len: u64) -> Result<&'de [u8], Error> {
        let len = usize::try_from(len).map_err(|_| Error("length out of range".into()))?;
        let (slice, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or_else(|| Error("unexpected end of the packed value".into()))?;
        self.rest = rest;
        Ok(slice)
    }

    fn str(&mut self) -> Result<&'de str, Error> {
        let len = self.varint()?;
        std::str::from_utf8(self.slice(len)?).map_err(|e| Error(e.to_string()))
    }

    fn time(&mut self) -> Result<String, Error> {
        let seconds = unzigzag(self.varint()?);
        let nanos = u32::try_from(self.varint()?).map_err(|e| Error(e.to_string()))?;
        render_time(seconds, nanos).ok_or_else(|| Error("timestamp out of range".into()))
    }

    fn table_str(&mut self) -> Result<&'static str, Error> {
        let index = self.varint()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| self.table.get(i).copied())
            .ok_or_else(|| Error(format!("no table string {index}")))
    }

    fn at_end(&mut self) -> Result<bool, Error> {
        if self.peek()? == END {
            self.rest = &self.rest[1..];
            Ok(true)
        } else {
            Ok(false)
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Unpacker<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.byte()? {
            NONE => visitor.visit_none(),
            SOME => visitor.visit_some(self),
            FALSE => visitor.visit_bool(false),
            TRUE => visitor.visit_bool(true),
            UINT => visitor.visit_u64(self.varint()?),
            INT => visitor.visit_i64(unzigzag(self.varint()?)),
            FLOAT => {
                let bytes: [u8; 8] = self
                    .slice(8)?
                    .try_into()
                    .map_err(|_| Error("short float".into()))?;
                visitor.visit_f64(f64::from_le_bytes(bytes))
            }
            STR => visitor.visit_borrowed_str(self.str()?),
            TABLE_STR => visitor.visit_str(self.table_str()?),
            TIME => visitor.visit_string(self.time()?),
            BYTES => {
                let len = self.varint()?;
                visitor.visit_borrowed_bytes(self.slice(len)?)
            }
            NAME => visitor.visit_str(name_of(self.varint()?)?),
            SEQ => Elements::read(self, |elements| visitor.visit_seq(elements)),
            MAP => Elements::read(self, |elements| visitor.visit_map(elements)),
            UNIT => visitor.visit_unit(),
            tag @ (UNIT_VARIANT | NEWTYPE_VARIANT | SEQ_VARIANT | MAP_VARIANT) => {
                let variant = name_of(self.varint()?)?;
                visitor.visit_enum(Variant {
                    unpacker: self,
                    tag,
                    variant,
                })
            }
            tag => Err(Error(format!("unknown tag {tag}"))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek()? {
            NONE => {
                self.byte()?;
                visitor.visit_none()
            }
            SOME => {
                self.byte()?;
                visitor.visit_some(self)
            }
            // why: k8s-openapi's types write a present optional field as its bare value (JSON
            // does not tell the two apart) and read it back as an option.
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.peek()? {
            UNIT_VARIANT | NEWTYPE_VARIANT | SEQ_VARIANT | MAP_VARIANT => {
                self.deserialize_any(visitor)
            }
            // why: an enum serialized by hand as a string reads back through its own visitor.
            _ => match self.byte()? {
                STR => {
                    visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(self.str()?))
                }
                TABLE_STR => visitor.visit_enum(IntoDeserializer::<Error>::into_deserializer(
                    self.table_str()?,
                )),
                tag => Err(Error(format!("tag {tag} where an enum was expected"))),
            },
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// The elements of a sequence, or the entries of a map, up to their `END`.
struct Elements<'a, 'de> {
    unpacker: &'a mut Unpacker<'de>,
    ended: bool,
}

impl<'a, 'de> Elements<'a, 'de> {
    /// Hands the elements to `visit`, then reads their `END` if it did not: a tuple's visitor
    /// stops after its last element.
    fn read<T>(
        unpacker: &'a mut Unpacker<'de>,
        visit: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut elements = Self {
            unpacker,
            ended: false,
        };
        let value = visit(&mut elements)?;
        if elements.ended || elements.unpacker.at_end()? {
            Ok(value)
        } else {
            Err(Error("more elements packed than read".into()))
        }
    }

    fn at_end(&mut self) -> Result<bool, Error> {
        if !self.ended {
            self.ended = self.unpacker.at_end()?;
        }
        Ok(self.ended)
    }
}

impl<'de> de::SeqAccess<'de> for &mut Elements<'_, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.at_end()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.unpacker).map(Some)
    }
}

impl<'de> de::MapAccess<'de> for &mut Elements<'_, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.at_end()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.unpacker).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.unpacker)
    }
}

/// An enum's variant, its name already read.
struct Variant<'a, 'de> {
    unpacker: &'a mut Unpacker<'de>,
    tag: u8,
    variant: &'static str,
}

impl<'de> de::EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Error;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let name: de::value::StrDeserializer<'_, Error> = self.variant.into_deserializer();
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        self.expect(UNIT_VARIANT)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        self.expect(NEWTYPE_VARIANT)?;
        seed.deserialize(&mut *self.unpacker)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.expect(SEQ_VARIANT)?;
        Elements::read(self.unpacker, |elements| visitor.visit_seq(elements))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.expect(MAP_VARIANT)?;
        Elements::read(self.unpacker, |elements| visitor.visit_map(elements))
    }
}

impl Variant<'_, '_> {
    fn expect(&self, tag: u8) -> Result<(), Error> {
        if self.tag == tag {
            Ok(())
        } else {
            Err(Error(format!(
                "variant {} packed with tag {}, read as {tag}",
                self.variant, self.tag
            )))
        }
    }
}
