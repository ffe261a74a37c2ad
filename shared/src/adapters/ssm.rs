//! Reads of SSM SecureString parameters (the key that seals stored secrets,
//! the signing secrets), decrypted by SSM. A single SigV4-signed
//! `GetParameter` call with the SDK's own signer and credentials: the whole
//! SSM SDK would add 350,000 lines to every build for this one request.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use serde_json::{Value, json};

use super::aws::lambda_sdk_config;

/// The decrypted value of the SecureString parameter `name`.
pub async fn secure_parameter(name: &str) -> Result<String, String> {
    let body = json!({ "Name": name, "WithDecryption": true });
    let answer = call("GetParameter", &body)
        .await
        .map_err(|e| format!("SSM GetParameter {name}: {e}"))?;
    answer["Parameter"]["Value"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("SSM GetParameter {name}: no value in the answer"))
}

/// One signed SSM API call (`AmazonSSM.<action>` with a JSON body): its JSON
/// answer, or why it failed.
pub(crate) async fn call(action: &str, body: &Value) -> Result<Value, String> {
    let config = lambda_sdk_config()?;
    let region = config
        .region()
        .map(|r| r.to_string())
        .ok_or("no AWS region is configured")?;
    let credentials = config
        .credentials_provider()
        .ok_or("no AWS credentials are configured")?
        .provide_credentials()
        .await
        .map_err(|e| format!("AWS credentials: {e}"))?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL_SSM")
        .ok()
        .or_else(|| config.endpoint_url().map(str::to_string))
        .unwrap_or_else(|| format!("https://ssm.{region}.amazonaws.com"));
    let body = body.to_string();
    let target = format!("AmazonSSM.{action}");
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target.as_str()),
    ];
    let identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&region)
        .name("ssm")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        "POST",
        &endpoint,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    let mut request = http::Request::post(&endpoint);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let mut request = request.body(body).map_err(|e| e.to_string())?;
    instructions.apply_to_request_http1x(&mut request);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let request = reqwest::Request::try_from(request).map_err(|e| e.to_string())?;
    let answer = client
        .execute(request)
        .await
        .map_err(|e| format!("SSM: {e}"))?;
    let status = answer.status();
    let text = answer.text().await.map_err(|e| format!("SSM: {e}"))?;
    if !status.is_success() {
        let kind = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["__type"].as_str().map(str::to_string))
            .unwrap_or_default();
        return Err(format!("HTTP {status} {kind}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("the answer is not JSON: {e}"))
}
