//! Column shapes shared by the services' migrations, so every table spells ids, text and
//! timestamps the same way on PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;

/// A UUID primary key stored as its 36-character text (UUIDv7 text sorts by creation time on
/// both databases, which cursor pagination relies on).
pub fn id<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .string_len(36)
        .not_null()
        .primary_key()
        .to_owned()
}

/// A reference to another row's id (no foreign key: ids cross no service boundary, and the
/// store checks ownership itself).
pub fn id_ref<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).string_len(36).not_null().to_owned()
}

pub fn text<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .text()
        .not_null()
        .default("")
        .to_owned()
}

pub fn timestamp<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

pub fn timestamp_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

pub fn integer<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .integer()
        .not_null()
        .default(0)
        .to_owned()
}

pub fn boolean<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .boolean()
        .not_null()
        .default(false)
        .to_owned()
}

/// An integer identity primary key for hot tables (small index entries, cheap to compare);
/// public ids live beside it as UUID text.
pub fn serial<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .auto_increment()
        .primary_key()
        .to_owned()
}

pub fn big_integer<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name)
        .big_integer()
        .not_null()
        .default(0)
        .to_owned()
}

pub fn integer_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).integer().null().to_owned()
}

pub fn text_null<T: IntoIden>(name: T) -> ColumnDef {
    ColumnDef::new(name).text().null().to_owned()
}
