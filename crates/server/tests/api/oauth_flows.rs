//! The sign-in flows over HTTP, as a browser and an attacker use them: the
//! authorization code with PKCE through Palisade's sign-in page, the device
//! code flow and its verification page, refresh tokens, public clients;
//! and what attackers try (an unregistered redirect URI, a reused code, a
//! missing or wrong PKCE verifier, a forged form, a device code polled after
//! expiry, a refresh token reused after rotation).

use crate::harness::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use palisade_domain::{DeviceGroupAccess, Role};
use palisade_identity::admin::SignInSettings;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MDE: &str = "https://api.securitycenter.microsoft.com/.default";
pub(crate) const VERIFIER: &str = "a-verifier-of-the-client-of-forty-three-chars-or-more";
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// A server with a user and a public client app allowed to redirect to
/// `http://localhost/callback` (any port) and `https://app.example/cb`.
pub(crate) struct SignInFixture {
    pub server: TestServer,
    pub client_id: String,
    pub username: String,
    /// No redirects followed: the tests read them.
    browser: reqwest::Client,
}

pub(crate) async fn fixture() -> SignInFixture {
    let server = TestServer::start().await;
    let username = "analyst@contoso.example".to_string();
    server
        .admin
        .put_user(
            &server.tenant_id,
            &username,
            &[Role::ViewData, Role::ActiveRemediationActions],
            DeviceGroupAccess::All,
            Some(PASSWORD),
        )
        .await
        .unwrap();
    let settings = SignInSettings {
        allow_public_client: true,
        redirect_uris: vec![
            "http://localhost/callback".into(),
            "https://app.example/cb".into(),
        ],
        certificates: vec![],
    };
    let (app, _) = server
        .admin
        .put_app_with(
            &server.tenant_id,
            None,
            "Playbook CLI",
            &all_permissions(),
            &settings,
        )
        .await
        .unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    SignInFixture {
        server,
        client_id: app.client_id,
        username,
        browser,
    }
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The value of the hidden field `name` in a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = start + html[start..].find('"')?;
    Some(html[start..end].to_string())
}

/// The `name=value` of the page's Set-Cookie.
fn cookie_of(reply: &Reply) -> String {
    let set = reply.headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

pub(crate) fn query_of(location: &str) -> Value {
    let query = location.split_once(['?', '#']).map_or("", |(_, q)| q);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

impl SignInFixture {
    pub fn authorize_url(&self, params: &[(&str, &str)]) -> String {
        let query = serde_urlencoded::to_string(params).unwrap();
        self.server.url(&format!(
            "/{}/oauth2/v2.0/authorize?{query}",
            self.server.tenant_id
        ))
    }

    pub fn code_request(&self, redirect_uri: &str) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", self.client_id.clone()),
            ("response_type", "code".into()),
            ("redirect_uri", redirect_uri.into()),
            ("scope", format!("{MDE} openid profile offline_access")),
            ("state", "state-42".into()),
            ("nonce", "nonce-7".into()),
            ("code_challenge", challenge(VERIFIER)),
            ("code_challenge_method", "S256".into()),
        ]
    }

    /// Opens the sign-in page of an authorization request.
    async fn open(&self, url: &str) -> Reply {
        self.server.send(self.browser.get(url)).await
    }

    /// Posts the sign-in form of `page` (opened at `url`) with `password`.
    async fn sign_in(&self, url: &str, page: &Reply, username: &str, password: &str) -> Reply {
        let csrf = hidden(&page.text, "csrf_token").expect("the form has a CSRF token");
        let request = self
            .browser
            .post(url)
            .header("cookie", cookie_of(page))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", username),
                ("password", password),
            ]);
        self.server.send(request).await
    }

    /// A code for the user, through the sign-in page, sent to `redirect_uri`.
    async fn code(&self, redirect_uri: &str) -> String {
        let params = self.code_request(redirect_uri);
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let url = self.authorize_url(&params);
        let page = self.open(&url).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let done = self.sign_in(&url, &page, &self.username, PASSWORD).await;
        assert_eq!(done.status, 302, "{}", done.text);
        let location = done.headers["location"].to_str().unwrap();
        assert!(location.starts_with(redirect_uri), "{location}");
        let answer = query_of(location);
        assert_eq!(answer["state"], "state-42", "the state comes back as sent");
        answer["code"].as_str().unwrap().to_string()
    }

    pub async fn redeem(&self, fields: &[(&str, &str)]) -> Reply {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", self.client_id.as_str()),
        ];
        form.extend_from_slice(fields);
        self.server.token_request(&form).await
    }

    async fn machines_with(&self, token: &str) -> u16 {
        self.server
            .get_as(Some(token), "/api/machines?$top=1")
            .await
            .status
            .as_u16()
    }

    async fn advance_clock(&self, by: &str) {
        let url = self.server.url(&format!(
            "/_palisade/v1/tenants/{}/clock",
            self.server.tenant_id
        ));
        let request = self
            .browser
            .put(url)
            .bearer_auth(&self.server.operator_token)
            .json(&json!({"advance": by}));
        let reply = self.server.send(request).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
}

#[track_caller]
fn assert_oauth_error(reply: &Reply, status: u16, error: &str, aadsts: u64) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json["error"], error, "{}", reply.text);
    assert_eq!(reply.json["error_codes"][0], aadsts, "{}", reply.text);
}

#[tokio::test]
async fn the_sign_in_page_is_a_safe_form_and_tells_no_one_which_users_exist() {
    let f = fixture().await;
    let params = f.code_request("http://localhost:53127/callback");
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let url = f.authorize_url(&params);
    let page = f.open(&url).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text.contains("name=\"username\"") && page.text.contains("name=\"password\""));
    assert!(
        page.text.contains("<label for=\"username\">"),
        "labelled controls"
    );
    assert!(page.text.contains("Playbook CLI"), "the page names the app");
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(
        policy.contains("form-action 'self' http://localhost:53127"),
        "{policy}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["cache-control"], "no-store");
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );

    // A wrong password and an unknown user read the same.
    let wrong = f
        .sign_in(&url, &page, &f.username, "not the password at all")
        .await;
    assert_eq!(wrong.status, 200, "{}", wrong.text);
    assert!(
        wrong
            .text
            .contains("Your user name or password is incorrect."),
        "{}",
        wrong.text
    );
    assert!(wrong.headers.get("location").is_none());
    let nobody = f
        .sign_in(
            &url,
            &page,
            "nobody@contoso.example",
            "not the password at all",
        )
        .await;
    let said = |r: &Reply| {
        r.text
            .split("role=\"alert\"")
            .nth(1)
            .unwrap()
            .split("</p>")
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(said(&wrong), said(&nobody));

    // A form posted from elsewhere (no cookie, or another token) is refused.
    let csrf = hidden(&page.text, "csrf_token").unwrap();
    let forged = f.browser.post(&url).form(&[
        ("csrf_token", csrf.as_str()),
        ("username", &f.username),
        ("password", PASSWORD),
    ]);
    let forged = f.server.send(forged).await;
    assert_eq!(forged.status, 403, "{}", forged.text);
    assert!(
        forged.headers.get("location").is_none(),
        "no code for a forged form"
    );
    let other_token = f
        .browser
        .post(&url)
        .header("cookie", cookie_of(&page))
        .form(&[
            ("csrf_token", "guessed"),
            ("username", &f.username),
            ("password", PASSWORD),
        ]);
    assert_eq!(f.server.send(other_token).await.status, 403);
}

#[tokio::test]
async fn a_code_with_pkce_gives_tokens_once_and_its_replay_revokes_the_sign_in() {
    let f = fixture().await;
    let redirect = "http://localhost:53127/callback";

    // A missing, then a wrong verifier: refused (each code is spent by its try).
    let code = f.code(redirect).await;
    let missing = f
        .redeem(&[("code", &code), ("redirect_uri", redirect)])
        .await;
    assert_oauth_error(&missing, 400, "invalid_grant", 501481);
    let code = f.code(redirect).await;
    let wrong_verifier = "b-verifier-of-the-client-of-forty-three-chars-or-more";
    let wrong = f
        .redeem(&[
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", wrong_verifier),
        ])
        .await;
    assert_oauth_error(&wrong, 400, "invalid_grant", 501481);
    // Another redirect URI than the code was sent to: refused.
    let code = f.code(redirect).await;
    let elsewhere = f
        .redeem(&[
            ("code", &code),
            ("redirect_uri", "https://app.example/cb"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_oauth_error(&elsewhere, 400, "invalid_grant", 70000);

    let code = f.code(redirect).await;
    let good = [
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", VERIFIER),
    ];
    let tokens = f.redeem(&good).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    let access = tokens.json["access_token"].as_str().unwrap();
    let claims = jwt_claims(access);
    assert_eq!(claims["upn"], f.username);
    assert_eq!(claims["idtyp"], "user");
    assert!(claims["scp"].as_str().unwrap().contains("Machine.Isolate"));
    assert_eq!(f.machines_with(access).await, 200);
    let id_token = jwt_claims(tokens.json["id_token"].as_str().unwrap());
    assert_eq!(
        id_token["aud"], f.client_id,
        "an ID token is for the client"
    );
    assert_eq!(
        id_token["nonce"], "nonce-7",
        "with the nonce the client sent"
    );
    assert_eq!(id_token["preferred_username"], f.username);
    let refresh = tokens.json["refresh_token"].as_str().unwrap().to_string();

    // The same code again: refused, and the sign-in's refresh token with it.
    let replay = f.redeem(&good).await;
    assert_oauth_error(&replay, 400, "invalid_grant", 54005);
    let after = f
        .server
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("client_id", &f.client_id),
            ("refresh_token", &refresh),
            ("scope", MDE),
        ])
        .await;
    assert_oauth_error(&after, 400, "invalid_grant", 70000);
    // A made-up code.
    let made_up = f
        .redeem(&[
            ("code", "AAAA"),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_oauth_error(&made_up, 400, "invalid_grant", 70000);
}

#[tokio::test]
async fn authorization_requests_that_cannot_be_trusted_are_shown_never_redirected() {
    let f = fixture().await;
    let mut params = f.code_request("https://evil.example/steal");
    let as_pairs = |p: &Vec<(&'static str, String)>| -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
    };
    let open = |pairs: Vec<(String, String)>| {
        let url = f.server.url(&format!(
            "/{}/oauth2/v2.0/authorize?{}",
            f.server.tenant_id,
            serde_urlencoded::to_string(pairs).unwrap()
        ));
        f.open_owned(url)
    };
    let evil = open(as_pairs(&params)).await;
    assert_eq!(evil.status, 400, "{}", evil.text);
    assert!(evil.headers.get("location").is_none());
    assert!(evil.text.contains("AADSTS50011"), "{}", evil.text);
    // A posted sign-in for that request is refused the same way.
    let post_url = f.authorize_url(&[
        ("client_id", &f.client_id),
        ("response_type", "code"),
        ("redirect_uri", "https://evil.example/steal"),
    ]);
    let posted = f
        .server
        .send(
            f.browser
                .post(&post_url)
                .form(&[("username", "a"), ("password", "b")]),
        )
        .await;
    assert_eq!(posted.status, 400);
    assert!(posted.headers.get("location").is_none());

    params[0].1 = "00000000-0000-0000-0000-000000000000".into();
    let unknown = open(as_pairs(&params)).await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert!(unknown.text.contains("AADSTS700016"), "{}", unknown.text);

    // With a registered redirect URI, errors go back to the client.
    let mut params = f.code_request("https://app.example/cb");
    params.retain(|(k, _)| !k.starts_with("code_challenge"));
    let no_pkce = open(as_pairs(&params)).await;
    assert_eq!(no_pkce.status, 302, "{}", no_pkce.text);
    let answer = query_of(no_pkce.headers["location"].to_str().unwrap());
    assert_eq!(answer["error"], "invalid_request");
    assert!(answer["error_description"]
        .as_str()
        .unwrap()
        .contains("Proof Key"));
    assert_eq!(answer["state"], "state-42");
    let mut params = f.code_request("https://app.example/cb");
    params[1].1 = "token".into();
    let implicit = open(as_pairs(&params)).await;
    assert_eq!(implicit.status, 302);
    assert_eq!(
        query_of(implicit.headers["location"].to_str().unwrap())["error"],
        "unsupported_response_type"
    );
}

impl SignInFixture {
    /// A refresh token of the user's password sign-in through the public app.
    async fn password_grant(&self) -> String {
        let reply = self
            .server
            .token_request(&[
                ("grant_type", "password"),
                ("client_id", &self.client_id),
                ("username", &self.username),
                ("password", PASSWORD),
                ("scope", &format!("{MDE} offline_access")),
            ])
            .await;
        assert_eq!(
            reply.status, 200,
            "a public client signs in without a secret: {}",
            reply.text
        );
        reply.json["refresh_token"].as_str().unwrap().to_string()
    }

    async fn refresh(&self, token: String) -> Reply {
        self.server
            .token_request(&[
                ("grant_type", "refresh_token"),
                ("client_id", &self.client_id),
                ("refresh_token", &token),
                ("scope", &format!("{MDE} offline_access")),
            ])
            .await
    }

    async fn open_owned(&self, url: String) -> Reply {
        self.open(&url).await
    }

    async fn poll(&self, device_code: &str) -> Reply {
        self.server
            .token_request(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", &self.client_id),
                ("device_code", device_code),
            ])
            .await
    }

    async fn start_device_flow(&self, client_id: &str) -> Reply {
        let url = self.server.url(&format!(
            "/{}/oauth2/v2.0/devicecode",
            self.server.tenant_id
        ));
        let request = self.browser.post(url).form(&[
            ("client_id", client_id),
            ("scope", &format!("{MDE} offline_access")),
        ]);
        self.server.send(request).await
    }

    /// The person's part at `/devicelogin`: the code, then the sign-in form.
    async fn enter_code(&self, user_code: &str, password: &str) -> Reply {
        let url = self.server.url("/devicelogin");
        let page = self.server.send(self.browser.get(&url)).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let cookie = cookie_of(&page);
        let csrf = hidden(&page.text, "csrf_token").unwrap();
        let typed = user_code.to_lowercase();
        let form = self
            .browser
            .post(&url)
            .header("cookie", &cookie)
            .form(&[("csrf_token", csrf.as_str()), ("user_code", typed.as_str())]);
        let sign_in = self.server.send(form).await;
        if sign_in.status != 200 {
            return sign_in;
        }
        assert!(
            sign_in.text.contains("name=\"password\""),
            "{}",
            sign_in.text
        );
        let csrf = hidden(&sign_in.text, "csrf_token").unwrap();
        let code = hidden(&sign_in.text, "user_code").unwrap();
        let form = self
            .browser
            .post(&url)
            .header("cookie", cookie_of(&sign_in))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("user_code", code.as_str()),
                ("username", &self.username),
                ("password", password),
            ]);
        self.server.send(form).await
    }
}

#[tokio::test]
async fn the_device_code_flow_answers_as_entra_until_the_user_signs_in_and_expires() {
    let f = fixture().await;
    let started = f.start_device_flow(&f.client_id).await;
    assert_eq!(started.status, 200, "{}", started.text);
    let flow = &started.json;
    assert_eq!(flow["verification_uri"], f.server.url("/devicelogin"));
    assert_eq!(flow["expires_in"], 900);
    assert_eq!(flow["interval"], 5);
    let user_code = flow["user_code"].as_str().unwrap();
    assert!(flow["message"].as_str().unwrap().contains(user_code));
    let device_code = flow["device_code"].as_str().unwrap();

    assert_oauth_error(
        &f.poll(device_code).await,
        400,
        "authorization_pending",
        70016,
    );
    assert_oauth_error(&f.poll(device_code).await, 400, "slow_down", 70016);

    // A wrong password at the page: told so, the device still waits.
    let refused = f.enter_code(user_code, "not the password at all").await;
    assert!(
        refused
            .text
            .contains("Your user name or password is incorrect."),
        "{}",
        refused.text
    );
    let signed_in = f.enter_code(user_code, PASSWORD).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text);
    assert!(
        signed_in.text.contains("You have signed in to"),
        "{}",
        signed_in.text
    );
    let tokens = f.poll(device_code).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    assert_eq!(
        jwt_claims(tokens.json["access_token"].as_str().unwrap())["upn"],
        f.username
    );
    assert!(
        tokens.json["refresh_token"].is_string(),
        "offline_access was asked for"
    );
    // Once only; and the code is no longer one to enter.
    assert_oauth_error(&f.poll(device_code).await, 400, "invalid_grant", 54005);
    let again = f.enter_code(user_code, PASSWORD).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert!(again.text.contains("not valid or has expired"));

    // A confidential app has no device code flow.
    let (confidential, _) = f
        .server
        .admin
        .put_app(&f.server.tenant_id, None, "Daemon", &all_permissions())
        .await
        .unwrap();
    let refused = f.start_device_flow(&confidential.client_id).await;
    assert_oauth_error(&refused, 400, "invalid_client", 7000218);

    // A code nobody entered in 15 minutes has expired.
    let late = f.start_device_flow(&f.client_id).await;
    let late_code = late.json["device_code"].as_str().unwrap();
    f.advance_clock("PT16M").await;
    assert_oauth_error(&f.poll(late_code).await, 400, "expired_token", 70020);
    let expired = f
        .enter_code(late.json["user_code"].as_str().unwrap(), PASSWORD)
        .await;
    assert_eq!(expired.status, 400);
    assert_oauth_error(&f.poll("made-up").await, 400, "invalid_grant", 70000);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_end_with_a_replay_a_new_password_or_the_app() {
    let f = fixture().await;
    let first = f.password_grant().await;
    let rotated = f.refresh(first.clone()).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    let second = rotated.json["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second, "rotated on use");
    assert_eq!(
        f.machines_with(rotated.json["access_token"].as_str().unwrap())
            .await,
        200
    );
    // The old one again: refused, and the new one is revoked with it.
    assert_oauth_error(&f.refresh(first).await, 400, "invalid_grant", 54005);
    assert_oauth_error(&f.refresh(second).await, 400, "invalid_grant", 70000);

    // A new password ends the user's sign-ins.
    let token = f.password_grant().await;
    f.server
        .admin
        .put_user(
            &f.server.tenant_id,
            &f.username,
            &[Role::ViewData, Role::ActiveRemediationActions],
            DeviceGroupAccess::All,
            Some(PASSWORD),
        )
        .await
        .unwrap();
    assert_oauth_error(&f.refresh(token).await, 400, "invalid_grant", 70000);
    // Deleting the app ends the sign-ins made through it.
    let token = f.password_grant().await;
    f.server
        .admin
        .delete_app(&f.server.tenant_id, &f.client_id)
        .await
        .unwrap();
    let gone = f.refresh(token).await;
    assert_eq!(gone.status, 400, "{}", gone.text);
}

#[tokio::test]
async fn a_confidential_app_signs_users_in_only_with_its_secret() {
    let f = fixture().await;
    let (app, secret) = f
        .server
        .admin
        .put_app(&f.server.tenant_id, None, "Daemon", &all_permissions())
        .await
        .unwrap();
    let mut form = vec![
        ("grant_type", "password"),
        ("client_id", app.client_id.as_str()),
        ("username", f.username.as_str()),
        ("password", PASSWORD),
        ("scope", MDE),
    ];
    assert_oauth_error(
        &f.server.token_request(&form).await,
        401,
        "invalid_client",
        7000218,
    );
    form.push(("client_secret", &secret));
    assert_eq!(f.server.token_request(&form).await.status, 200);
    // Nor does a public app get client credentials without a secret.
    let daemon = f
        .server
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &f.client_id),
            ("scope", MDE),
        ])
        .await;
    assert_oauth_error(&daemon, 401, "invalid_client", 7000218);
    // The discovery document names the flows.
    let discovery = f
        .server
        .get(&format!(
            "/{}/v2.0/.well-known/openid-configuration",
            f.server.tenant_id
        ))
        .await;
    assert_eq!(
        discovery.json["device_authorization_endpoint"],
        f.server
            .url(&format!("/{}/oauth2/v2.0/devicecode", f.server.tenant_id))
    );
    let grants = discovery.json["grant_types_supported"].as_array().unwrap();
    assert!(
        grants.contains(&json!("authorization_code")) && grants.contains(&json!("refresh_token"))
    );
}

#[tokio::test]
async fn an_app_cannot_be_registered_with_what_sign_in_could_never_use() {
    let f = fixture().await;
    let register = |settings: SignInSettings| {
        let admin = f.server.admin.clone();
        let tenant = f.server.tenant_id.clone();
        async move {
            let result = admin
                .put_app_with(&tenant, None, "Bad", &all_permissions(), &settings)
                .await;
            result.err().map(|e| e.to_string())
        }
    };
    let with_uri = |uri: &str| SignInSettings {
        redirect_uris: vec![uri.into()],
        ..SignInSettings::default()
    };
    for uri in [
        "http://evil.example/cb",
        "https://app.example/cb#x",
        "javascript:alert(1)",
        "/cb",
    ] {
        let refused = register(with_uri(uri)).await;
        assert!(
            refused.as_deref().is_some_and(|e| e.contains(uri)),
            "{uri}: {refused:?}"
        );
    }
    let junk = SignInSettings {
        certificates: vec!["not a certificate".into()],
        ..SignInSettings::default()
    };
    let refused = register(junk).await.unwrap();
    assert!(refused.starts_with("certificate 1:"), "{refused}");
    assert_eq!(register(with_uri("https://app.example/other")).await, None);
}
