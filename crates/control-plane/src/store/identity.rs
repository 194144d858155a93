//! Users and service tokens.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};

use super::entity::{service_token, user};
use super::new_id;
use super::page::Page;
use crate::error::{Error, Result, conflict_or};

pub async fn create_user<C: ConnectionTrait>(
    conn: &C,
    org_id: &str,
    username: &str,
    password_hash: String,
    role: &str,
) -> Result<user::Model> {
    user::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id.to_owned()),
        username: Set(username.to_owned()),
        password_hash: Set(password_hash),
        role: Set(role.to_owned()),
        created_at: Set(Utc::now()),
    }
    .insert(conn)
    .await
    .map_err(|e| conflict_or(e, || format!("username `{username}` is taken")))
}

pub async fn find_user_by_name<C: ConnectionTrait>(
    conn: &C,
    username: &str,
) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .filter(user::Column::Username.eq(username))
        .one(conn)
        .await?)
}

pub async fn find_user<C: ConnectionTrait>(conn: &C, id: &str) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).one(conn).await?)
}

/// What a new token is: everything but the secret, which is never stored.
pub struct NewToken<'a> {
    pub name: &'a str,
    pub org_id: &'a str,
    pub project_id: &'a str,
    pub scopes: &'a [String],
    pub token_hash: String,
    pub created_by: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn create_token<C: ConnectionTrait>(
    conn: &C,
    token: NewToken<'_>,
) -> Result<service_token::Model> {
    Ok(service_token::ActiveModel {
        id: Set(new_id()),
        name: Set(token.name.to_owned()),
        org_id: Set(token.org_id.to_owned()),
        project_id: Set(token.project_id.to_owned()),
        scopes: Set(token.scopes.join(" ")),
        token_hash: Set(token.token_hash),
        created_by: Set(token.created_by.to_owned()),
        expires_at: Set(token.expires_at),
        created_at: Set(Utc::now()),
        last_used_at: Set(None),
        revoked_at: Set(None),
    }
    .insert(conn)
    .await?)
}

pub async fn find_token_by_hash<C: ConnectionTrait>(
    conn: &C,
    token_hash: &str,
) -> Result<Option<service_token::Model>> {
    Ok(service_token::Entity::find()
        .filter(service_token::Column::TokenHash.eq(token_hash))
        .one(conn)
        .await?)
}

pub async fn get_token<C: ConnectionTrait>(conn: &C, id: &str) -> Result<service_token::Model> {
    service_token::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or_else(|| Error::not_found("service token", id))
}

/// Tokens newest first; `org_id` `None` lists every token (platform admins).
pub async fn list_tokens<C: ConnectionTrait>(
    conn: &C,
    org_id: Option<&str>,
    project_id: Option<&str>,
    page: &Page,
) -> Result<Vec<service_token::Model>> {
    let mut query = service_token::Entity::find();
    if let Some(org) = org_id {
        query = query.filter(service_token::Column::OrgId.eq(org));
    }
    if let Some(project) = project_id {
        query = query.filter(service_token::Column::ProjectId.eq(project));
    }
    if let Some(before) = &page.before {
        query = query.filter(service_token::Column::Id.lt(before.as_str()));
    }
    Ok(query
        .order_by_desc(service_token::Column::Id)
        .limit(page.limit + 1)
        .all(conn)
        .await?)
}

/// Marks the token revoked; `false` when it already was.
pub async fn revoke_token<C: ConnectionTrait>(conn: &C, id: &str) -> Result<bool> {
    let result = service_token::Entity::update_many()
        .col_expr(service_token::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(service_token::Column::Id.eq(id))
        .filter(service_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records a use, at most once a minute per token so that authentication is not a write.
pub async fn touch_token<C: ConnectionTrait>(conn: &C, id: &str, now: DateTime<Utc>) -> Result<()> {
    let stale = now - chrono::Duration::seconds(60);
    service_token::Entity::update_many()
        .col_expr(service_token::Column::LastUsedAt, Expr::value(now))
        .filter(service_token::Column::Id.eq(id))
        .filter(
            Condition::any()
                .add(service_token::Column::LastUsedAt.is_null())
                .add(service_token::Column::LastUsedAt.lt(stale)),
        )
        .exec(conn)
        .await?;
    Ok(())
}
