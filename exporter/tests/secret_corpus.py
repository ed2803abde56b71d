"""Realistic secret shapes and look-alikes that are not secrets, for the redaction corpus tests.

Every secret value is synthetic: drawn from a seeded generator in the alphabet and length of the
real thing, never a real credential. ``SECRETS`` holds (id, text as an agent would handle it,
the secret values in it); ``HARMLESS`` holds (id, text that must be stored unchanged).
"""

from __future__ import annotations

import base64
import json
import random
import string

_RNG = random.Random(20261130)
B62 = string.ascii_letters + string.digits
B64 = B62 + "+/"
URLSAFE = B62 + "-_"
HEX = "0123456789abcdef"
UPPER = string.ascii_uppercase + string.digits


def fake(length: int, alphabet: str = B62) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(length))


def password() -> str:
    """A human-made looking password: word, digits, punctuation."""
    word = _RNG.choice(["Sunset", "Falcon", "Marble", "Harbor", "Quartz", "Nimbus", "Copper"])
    return f"{word}{fake(4, string.digits)}{_RNG.choice('!#%*')}{fake(5)}"


def pem_body(lines: int = 6) -> str:
    return "\n".join(fake(64, B64) for _ in range(lines)) + "\n" + fake(40, B64) + "=="


def jwt() -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"sub": fake(12, HEX), "iat": 1764500000, "nonce": fake(16)}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{fake(43, URLSAFE)}"


SECRETS: list[tuple[str, str, list[str]]] = []


def add(case_id: str, text: str, *secrets: str) -> None:
    assert all(len(s) >= 8 and all(piece in text for piece in s.split()) for s in secrets), case_id
    SECRETS.append((case_id, text, list(secrets)))


# --- cloud: AWS ------------------------------------------------------------------------------
akia, aws_secret = "AKIA" + fake(16, UPPER), fake(40, B64)
asia, session_token = "ASIA" + fake(16, UPPER), fake(300, B64)
add("aws-env-key-id", f"export AWS_ACCESS_KEY_ID={akia}", akia)
add("aws-env-secret", f"AWS_SECRET_ACCESS_KEY={aws_secret} aws s3 ls s3://bucket", aws_secret)
add("aws-env-session", f"export AWS_SESSION_TOKEN={session_token}", session_token)
add("aws-credentials-file",
    f"[default]\naws_access_key_id = {akia}\naws_secret_access_key = {aws_secret}\n"
    "region = eu-west-1\n", akia, aws_secret)
k2 = fake(40, B64)
add("aws-configure-set", f"aws configure set aws_secret_access_key {k2} --profile ci", k2)
add("aws-bare-key-id-in-log", f"Found credentials in shared file: {asia} (profile default)", asia)
k3, t3 = fake(40, B64), fake(280, B64)
add("aws-sts-json",
    json.dumps({"Credentials": {"AccessKeyId": asia, "SecretAccessKey": k3,
                                "SessionToken": t3, "Expiration": "2026-11-30T15:00:00Z"}},
               indent=2), asia, k3, t3)
k4 = fake(40, B64)
add("aws-boto3-code",
    f's3 = boto3.client("s3", aws_access_key_id="{akia}",\n'
    f'                  aws_secret_access_key="{k4}")', akia, k4)
k5 = fake(40, B64)
add("aws-terraform", f'provider "aws" {{\n  access_key = "{akia}"\n  secret_key = "{k5}"\n}}',
    akia, k5)
k6 = fake(40, B64)
add("aws-env-output",
    f"HOME=/home/dev\nAWS_DEFAULT_REGION=us-east-1\nAWS_SECRET_ACCESS_KEY={k6}\nSHELL=/bin/bash",
    k6)

# --- cloud: GCP ------------------------------------------------------------------------------
body, key_id = pem_body(), fake(40, HEX)
add("gcp-service-account-json", json.dumps({
    "type": "service_account", "project_id": "acme-prod", "private_key_id": key_id,
    "private_key": f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n",
    "client_email": "ci@acme-prod.iam.gserviceaccount.com", "client_id": "1234567890"},
    indent=2), key_id, body)
aiza = "AIza" + fake(35, URLSAFE)
add("gcp-api-key-url", f"curl 'https://maps.googleapis.com/maps/api/geocode/json?address=x&key={aiza}'",
    aiza)
add("gcp-api-key-bare", f"const firebaseConfig = {{ apiKey: \"{aiza}\", projectId: \"acme\" }};",
    aiza)
gocspx = "GOCSPX-" + fake(28, URLSAFE)
add("gcp-oauth-client-secret", json.dumps({"installed": {"client_id": "x.apps.googleusercontent"
                                                          ".com", "client_secret": gocspx}}),
    gocspx)
ya29 = "ya29." + fake(120, URLSAFE)
add("gcp-access-token-header", f"curl -H \"Authorization: Bearer {ya29}\" https://storage.googleapis.com/",
    ya29)
add("gcp-print-access-token", f"{ya29}\n", ya29)

# --- cloud: Azure ----------------------------------------------------------------------------
acct_key = fake(86, B64) + "=="
add("azure-storage-connection-string",
    "AZURE_STORAGE_CONNECTION_STRING=\"DefaultEndpointsProtocol=https;AccountName=acmeprod;"
    f"AccountKey={acct_key};EndpointSuffix=core.windows.net\"", acct_key)
add("azure-storage-connection-string-json", json.dumps({"ConnectionStrings": {
    "Storage": f"DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={acct_key};"
               "EndpointSuffix=core.windows.net"}}, indent=2), acct_key)
sig = fake(43, B62) + "%3D"
add("azure-sas-url", "azcopy copy ./dist 'https://acme.blob.core.windows.net/web?sv=2022-11-02"
    f"&ss=b&srt=co&sp=rwdlac&se=2026-12-01T00:00:00Z&st=2026-11-30T00:00:00Z&spr=https&sig={sig}'",
    sig)
sb_key = fake(43, B64) + "="
add("azure-service-bus", "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName="
    f"RootManageSharedAccessKey;SharedAccessKey={sb_key}", sb_key)
ad_secret = fake(3, B62) + "8Q~" + fake(34, B62 + "_~.-")
add("azure-ad-client-secret-env", f"AZURE_CLIENT_SECRET={ad_secret}", ad_secret)
add("azure-ad-client-secret-bare", f"Created secret: {ad_secret} (expires 2027-11-30)", ad_secret)
sp_pw = password()
add("azure-cli-login", f"az login --service-principal -u 0f1e2d3c-app -p {sp_pw} --tenant acme",
    sp_pw)

# --- forges: GitHub, GitLab, Bitbucket -------------------------------------------------------
for prefix in ("ghp", "gho", "ghu", "ghs", "ghr"):
    tok = f"{prefix}_{fake(36)}"
    add(f"github-{prefix}-bare", f"created {tok}\n", tok)
ghp = "ghp_" + fake(36)
pat = "github_pat_" + fake(22) + "_" + fake(59)
add("github-env", f"export GITHUB_TOKEN={ghp}", ghp)
add("github-fine-grained-pat", f"GH_TOKEN={pat} gh pr list", pat)
add("github-fine-grained-pat-bare", f"Your new token: {pat}", pat)
add("github-git-url-token", f"git clone https://{ghp}@github.com/acme/api.git", ghp)
ghs = "ghs_" + fake(36)
add("github-x-access-token-url",
    f"git remote set-url origin https://x-access-token:{ghs}@github.com/acme/api.git", ghs)
add("github-git-credentials-file", f"https://octocat:{ghp}@github.com\n", ghp)
add("github-auth-header", f"curl -H 'Authorization: token {ghp}' https://api.github.com/user",
    ghp)
add("github-with-token-stdin", f"echo {ghp} | gh auth login --with-token", ghp)
add("github-npmrc", f"//npm.pkg.github.com/:_authToken={ghp}\n@acme:registry=https://npm.pkg.github.com",
    ghp)
glpat = "glpat-" + fake(20, URLSAFE)
add("gitlab-env", f"GITLAB_TOKEN={glpat}", glpat)
add("gitlab-url", f"git push https://oauth2:{glpat}@gitlab.com/acme/api.git main", glpat)
add("gitlab-private-token-header",
    f"curl --header \"PRIVATE-TOKEN: {glpat}\" https://gitlab.com/api/v4/projects", glpat)
gldt = "gldt-" + fake(20, URLSAFE)
add("gitlab-deploy-token", f"docker login registry.gitlab.com -u deploy -p {gldt}", gldt)
glrt = "glrt-" + fake(20, URLSAFE)
add("gitlab-runner-toml", f'[[runners]]\n  name = "ci"\n  url = "https://gitlab.com"\n'
    f'  token = "{glrt}"\n  executor = "docker"', glrt)
add("gitlab-bare-in-output", f"Created personal access token {glpat} for user ci", glpat)
atbb = "ATBB" + fake(32)
add("bitbucket-app-password-url", f"git clone https://ci-bot:{atbb}@bitbucket.org/acme/api.git",
    atbb)
add("bitbucket-app-password-env", f"BITBUCKET_APP_PASSWORD={atbb}", atbb)
atatt = "ATATT3xFfGF0" + fake(180, URLSAFE) + "=" + fake(8, HEX.upper())
add("atlassian-api-token-curl",
    f"curl -u me@acme.io:{atatt} https://acme.atlassian.net/rest/api/3/myself", atatt)

# --- chat ------------------------------------------------------------------------------------
xoxb = f"xoxb-{fake(12, string.digits)}-{fake(13, string.digits)}-{fake(24)}"
digits = string.digits
xoxp = f"xoxp-{fake(12, digits)}-{fake(12, digits)}-{fake(13, digits)}-{fake(32, HEX)}"
add("slack-bot-env", f"SLACK_BOT_TOKEN={xoxb}", xoxb)
add("slack-user-bearer", f"curl -H 'Authorization: Bearer {xoxp}' https://slack.com/api/auth.test",
    xoxp)
add("slack-bare-json", json.dumps({"ok": True, "access_token": xoxb, "team": {"id": "T01"}}),
    xoxb)
add("slack-bot-in-code", f'client = WebClient("{xoxb}")', xoxb)
hook_path = f"T{fake(8, UPPER)}/B{fake(10, UPPER)}/{fake(24)}"
add("slack-webhook", f"curl -X POST -d '{{\"text\":\"deployed\"}}' https://hooks.slack.com/services/{hook_path}",
    hook_path)
xapp = f"xapp-1-A{fake(10, UPPER)}-{fake(13, string.digits)}-{fake(64, HEX)}"
add("slack-app-token", f"SLACK_APP_TOKEN={xapp} python bot.py", xapp)
signing = fake(32, HEX)
add("slack-signing-secret", f"SLACK_SIGNING_SECRET={signing}", signing)
discord = f"MT{fake(24)}.{fake(6, URLSAFE)}.{fake(38, URLSAFE)}"
add("discord-bot-env", f"DISCORD_TOKEN={discord}", discord)
add("discord-bot-header", f"curl -H \"Authorization: Bot {discord}\" https://discord.com/api/v10/users/@me",
    discord)
add("discord-config-json", json.dumps({"token": discord, "prefix": "!"}, indent=2), discord)
dhook = f"{fake(19, string.digits)}/{fake(68, URLSAFE)}"
add("discord-webhook", f"DISCORD_WEBHOOK=https://discord.com/api/webhooks/{dhook}", dhook)
add("discord-webhook-bare", f"requests.post('https://discord.com/api/webhooks/{dhook}', json=m)",
    dhook)
tg = f"{fake(10, string.digits)}:AA{fake(33, URLSAFE)}"
add("telegram-bot-env", f"TELEGRAM_BOT_TOKEN={tg}", tg)
add("telegram-bot-url", f"curl https://api.telegram.org/bot{tg}/getMe", tg)
add("telegram-bot-code", f'bot = telebot.TeleBot("{tg}")', tg)
teams = (f"{fake(8, HEX)}-{fake(4, HEX)}@{fake(8, HEX)}/IncomingWebhook/{fake(32, HEX)}/"
         f"{fake(8, HEX)}")
add("teams-webhook", f"TEAMS_URL=https://acme.webhook.office.com/webhookb2/{teams}", teams)

# --- payments and messaging services --------------------------------------------------------
sk_live = "sk_live_" + fake(99)
rk_live = "rk_live_" + fake(99)
sk_test = "sk_test_" + fake(24)
add("stripe-secret-env", f"STRIPE_SECRET_KEY={sk_live}", sk_live)
add("stripe-secret-bare", f"stripe.api_key = os.environ.get('X') or '{sk_live}'", sk_live)
add("stripe-restricted", f"Restricted key created: {rk_live}", rk_live)
add("stripe-curl-basic", f"curl https://api.stripe.com/v1/charges -u {sk_test}:", sk_test)
whsec = "whsec_" + fake(32)
add("stripe-webhook-secret", f"stripe listen --forward-to localhost:8000  # secret {whsec}",
    whsec)
twilio_sid, twilio_token = "AC" + fake(32, HEX), fake(32, HEX)
add("twilio-env", f"TWILIO_ACCOUNT_SID={twilio_sid}\nTWILIO_AUTH_TOKEN={twilio_token}",
    twilio_token)
add("twilio-curl", f"curl -X POST https://api.twilio.com/2010-04-01/Accounts/{twilio_sid}/"
    f"Messages.json -u {twilio_sid}:{twilio_token}", twilio_token)
twilio_key = "SK" + fake(32, HEX)
add("twilio-api-key", f"client = Client('{twilio_key}', api_secret, account_sid)", twilio_key)
sendgrid = f"SG.{fake(22, URLSAFE)}.{fake(43, URLSAFE)}"
add("sendgrid-env", f"SENDGRID_API_KEY={sendgrid}", sendgrid)
add("sendgrid-header", f"curl -H \"Authorization: Bearer {sendgrid}\" https://api.sendgrid.com/v3/mail/send",
    sendgrid)
add("sendgrid-bare", f"sg = SendGridAPIClient('{sendgrid}')", sendgrid)
mailgun = "key-" + fake(32, string.ascii_lowercase + string.digits)
add("mailgun-key", f"curl -s --user 'api:{mailgun}' https://api.mailgun.net/v3/x/messages",
    mailgun)

# --- AI providers ----------------------------------------------------------------------------
sk_proj = "sk-proj-" + fake(156, URLSAFE)
sk_legacy = "sk-" + fake(48)
sk_ant = "sk-ant-api03-" + fake(93, URLSAFE) + "AA"
sk_admin = "sk-ant-admin01-" + fake(93, URLSAFE) + "AA"
add("openai-env", f"OPENAI_API_KEY={sk_proj}", sk_proj)
add("openai-legacy-bare", f"Using key {sk_legacy} for the batch", sk_legacy)
add("openai-code", f'client = OpenAI(api_key="{sk_proj}")', sk_proj)
add("openai-header",
    f"curl https://api.openai.com/v1/models -H \"Authorization: Bearer {sk_legacy}\"",
    sk_legacy)
add("anthropic-env", f"export ANTHROPIC_API_KEY={sk_ant}", sk_ant)
add("anthropic-header", f"curl https://api.anthropic.com/v1/messages -H \"x-api-key: {sk_ant}\"",
    sk_ant)
add("anthropic-admin-bare", f"admin key: {sk_admin}", sk_admin)
add("anthropic-json", json.dumps({"apiKeyHelper": None, "env": {"ANTHROPIC_API_KEY": sk_ant}}),
    sk_ant)
hf = "hf_" + fake(34, string.ascii_letters)
add("huggingface-login", f"huggingface-cli login --token {hf}", hf)
add("huggingface-bare", f"HfApi(token='{hf}').whoami()", hf)

# --- package registries ----------------------------------------------------------------------
npm = "npm_" + fake(36)
add("npm-npmrc", f"//registry.npmjs.org/:_authToken={npm}\n", npm)
add("npm-env", f"NPM_TOKEN={npm} npm publish", npm)
add("npm-bare", f"Created token {npm} (publish, automation)", npm)
pypi = "pypi-AgEIcHlwaS5vcmc" + fake(150, URLSAFE)
add("pypi-pypirc", f"[pypi]\nusername = __token__\npassword = {pypi}\n", pypi)
add("pypi-twine", f"twine upload -u __token__ -p {pypi} dist/*", pypi)
add("pypi-uv-env", f"UV_PUBLISH_TOKEN={pypi} uv publish", pypi)
rubygems = "rubygems_" + fake(48, HEX)
add("rubygems-credentials", f"---\n:rubygems_api_key: {rubygems}\n", rubygems[9:])
nuget = "oy2" + fake(43, string.ascii_lowercase + string.digits)
add("nuget-push", f"dotnet nuget push pkg.nupkg --api-key {nuget} --source nuget.org", nuget)
dckr = "dckr_pat_" + fake(27, URLSAFE)
add("dockerhub-login", f"docker login -u acmeci -p {dckr}", dckr)
add("dockerhub-env", f"DOCKERHUB_TOKEN={dckr}", dckr)
cargo = "cio" + fake(32)
add("cargo-credentials-toml", f'[registry]\ntoken = "{cargo}"\n', cargo)

# --- other service tokens --------------------------------------------------------------------
hvs = "hvs." + fake(90, URLSAFE)
add("vault-login", f"vault login {hvs}", hvs)
add("vault-header", f"curl -H \"X-Vault-Token: {hvs}\" https://vault:8200/v1/secret/data/x", hvs)
dop = "dop_v1_" + fake(64, HEX)
add("digitalocean", f"doctl auth init --access-token {dop}", dop)
dapi = "dapi" + fake(32, HEX)
add("databricks", f"DATABRICKS_TOKEN={dapi}", dapi)
add("databricks-bare", f"host = x; token {dapi}", dapi)
glsa = "glsa_" + fake(32) + "_" + fake(8, HEX)
add("grafana-service-account", f"curl -H 'Authorization: Bearer {glsa}' http://grafana:3000/api/",
    glsa)
nrak = "NRAK-" + fake(27, UPPER)
add("newrelic", f"NEW_RELIC_API_KEY={nrak}", nrak)
add("newrelic-bare", f"key {nrak} created", nrak)
sentry_key = fake(32, HEX)
add("sentry-dsn", f"SENTRY_DSN=https://{sentry_key}@o450000.ingest.sentry.io/4500000", sentry_key)
add("sentry-dsn-code", f'sentry_sdk.init(dsn="https://{sentry_key}@o1.ingest.sentry.io/2")',
    sentry_key)
sntrys = "sntrys_" + fake(60, B64) + "="
add("sentry-auth-token", f"sentry-cli --auth-token {sntrys} releases new 1.2.3", sntrys)
lin = "lin_api_" + fake(40)
add("linear", f"Authorization: {lin}", lin)
add("linear-bare", f"linear = LinearClient('{lin}')", lin)
pmak = f"PMAK-{fake(24, HEX)}-{fake(34, HEX)}"
add("postman", f"postman login --with-api-key {pmak}", pmak)
sbp = "sbp_" + fake(40, HEX)
add("supabase", f"supabase login --token {sbp}", sbp)
shpat = "shpat_" + fake(32, HEX)
add("shopify", f"SHOPIFY_ACCESS_TOKEN={shpat}", shpat)
add("shopify-bare", f"session = shopify.Session('acme.myshopify.com', '2024-01', '{shpat}')",
    shpat)
doppler = "dp.pt." + fake(43)
add("doppler", f"doppler configure set token {doppler}", doppler)
age = "AGE-SECRET-KEY-1" + fake(58, UPPER)
add("age-key",
    f"# created: 2026-11-30\n# public key: age1{fake(58, string.ascii_lowercase)}\n{age}",
    age)
atlas = f"{fake(14)}.atlasv1.{fake(67)}"
add("terraform-cloud", f'credentials "app.terraform.io" {{\n  token = "{atlas}"\n}}', atlas)
add("terraform-cloud-bare", f"TFE token {atlas} stored", atlas)
heroku = "a1b2c3d4-" + fake(4, HEX) + "-" + fake(4, HEX) + "-" + fake(4, HEX) + "-" + fake(12, HEX)
add("heroku-env", f"HEROKU_API_KEY={heroku} heroku apps", heroku)

# --- JWTs -------------------------------------------------------------------------------------
token = jwt()
add("jwt-bare", f"{token}\n", token)
add("jwt-bearer", f"curl -H 'Authorization: Bearer {token}' http://localhost:8000/api/me", token)
add("jwt-json", json.dumps({"id_token": token, "refresh_token": fake(64), "expires_in": 3600}),
    token)
add("jwt-in-log", f"2026-11-30T14:00:00Z INFO issued session {token} for user 42", token)
add("jwt-cookie", f"Cookie: theme=dark; access_token={token}; lang=en", token)

# --- key blocks -------------------------------------------------------------------------------
for kind in ("RSA ", "EC ", "DSA ", "OPENSSH ", "ENCRYPTED ", ""):
    body = pem_body()
    block = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----\n"
    slug = (kind.strip() or "pkcs8").lower()
    add(f"pem-{slug}-file", block, body)
    add(f"pem-{slug}-heredoc",
        f"cat > ~/.ssh/deploy_key <<'EOF'\n{block}EOF\nchmod 600 ~/.ssh/deploy_key",
        body)
body = pem_body(10)
add("pgp-private-block", "-----BEGIN PGP PRIVATE KEY BLOCK-----\nComment: made-by gpg-2.4\n\n"
    f"{body}\n=AbCd\n-----END PGP PRIVATE KEY BLOCK-----\n", body)
body = pem_body()
add("pem-in-yaml", "tls:\n  private_key: |\n    -----BEGIN RSA PRIVATE KEY-----\n    "
    + body.replace("\n", "\n    ") + "\n    -----END RSA PRIVATE KEY-----\n", body)
body = pem_body()
add("pem-json-escaped-in-command",
    "echo '{\"key\": \"-----BEGIN EC PRIVATE KEY-----\\n" + body.replace("\n", "\\n")
    + "\\n-----END EC PRIVATE KEY-----\\n\"}' > key.json", *body.split("\n"))
body = pem_body(3)
add("pem-cut-without-end", f"-----BEGIN RSA PRIVATE KEY-----\n{body}", body)

# --- URL credentials --------------------------------------------------------------------------
for scheme, host in (("postgres", "db:5432/app"), ("postgresql", "10.0.0.5/app"),
                     ("mysql", "db.internal:3306/shop"), ("mongodb+srv", "cluster0.x.mongodb.net"),
                     ("redis", "cache:6379/0"), ("amqp", "rabbit:5672/vhost"),
                     ("ftp", "files.acme.io/in"), ("https", "nexus.acme.io/repository/pypi"),
                     ("smtp", "smtp.acme.io:587")):
    pw = password()
    add(f"url-{scheme}", f"psql {scheme}://app_user:{pw}@{host}", pw)
pw = password()
add("url-redis-no-user", f"REDIS_URL=redis://:{pw}@cache:6379/0", pw)
pw = password()
add("url-database-url", f"DATABASE_URL=postgres://app:{pw}@db:5432/app python manage.py migrate",
    pw)
pw = "p@ss" + fake(8)
add("url-password-with-at", f"mysql://root:{pw}@db/app", pw)
pw = password()
add("url-in-json-config", json.dumps({"database": {"url": f"postgresql://svc:{pw}@pg/app"}}),
    pw)
pw = password()
add("url-jdbc-query", f"jdbc:mysql://db:3306/app?user=svc&password={pw}&useSSL=true", pw)
pw = password()
add("url-pip-index", f"pip install --index-url https://ci:{pw}@pypi.acme.io/simple/ acme-lib",
    pw)

# --- command-line flags -----------------------------------------------------------------------
for case_id, template in (
    ("flag-password-space", "mysqladmin --password {} status"),
    ("flag-password-equals", "mongodump --uri mongodb://db --password={} --out /tmp/dump"),
    ("flag-mysql-p-attached", "mysql -h db -u root -p{} -e 'select 1'"),
    ("flag-mysql-p-space", "mysql -u root -p {}"),
    ("flag-mysqldump", "mysqldump -uroot -p{} shop > shop.sql"),
    ("flag-mariadb", "mariadb -u app -p{} app"),
    ("flag-sshpass", "sshpass -p '{}' ssh deploy@web1 uptime"),
    ("flag-docker-login", "docker login -u ci -p {} registry.acme.io"),
    ("flag-podman-login", "podman login --username ci --password {} quay.io"),
    ("flag-helm-repo", "helm repo add acme https://charts.acme.io --username ci --password {}"),
    ("flag-curl-u", "curl -u admin:{} http://localhost:8080/api"),
    ("flag-curl-user-long", "curl --user 'admin:{}' https://jenkins.acme.io/job/x/build"),
    ("flag-curl-proxy-user", "curl -x proxy:3128 --proxy-user bob:{} https://example.org"),
    ("flag-wget", "wget --user=bob --password={} https://files.acme.io/a.tgz"),
    ("flag-wget-http-password", "wget --http-user bob --http-password {} https://acme.io/x"),
    ("flag-redis-cli", "redis-cli -h cache -a {} ping"),
    ("flag-zip", "zip -P {} -r backup.zip data/"),
    ("flag-7z", "7z a -p{} secret.7z docs/"),
    ("flag-openssl-pass", "openssl pkcs12 -export -in c.pem -out c.p12 -passout pass:{}"),
    ("flag-keytool", "keytool -importcert -file ca.pem -keystore t.jks -storepass {} -noprompt"),
    ("flag-kubectl-literal", "kubectl create secret generic db --from-literal=password={}"),
    ("flag-helm-set", "helm upgrade app ./chart --set postgresql.auth.password={}"),
    ("flag-client-secret", "az ad sp credential reset --client-secret {}"),
    ("flag-api-key", "datadog-agent config --api-key {}"),
    ("flag-token", "gh-runner config --url https://github.com/acme --token {}"),
    ("flag-auth-token", "npm config set --auth-token {}"),
    ("flag-passphrase", "restic backup --passphrase {} /data"),
    ("flag-psql-conninfo", "psql \"host=db dbname=app user=app password={}\""),
    ("flag-mongosh", "mongosh mongodb://db/app -u admin -p {}"),
    ("flag-vault-kv", "vault kv put secret/app password={}"),
):
    pw = password()
    add(case_id, template.format(pw, pw), pw)

# --- environment assignments, env output, .env files -----------------------------------------
for name in ("DB_PASS", "SECRET_KEY", "PGPASSWORD", "MYSQL_PWD", "REDIS_PASSWORD", "JWT_SECRET",
             "SESSION_SECRET", "ENCRYPTION_KEY", "SIGNING_KEY", "SSH_KEY", "DJANGO_SECRET_KEY",
             "RAILS_MASTER_KEY", "NEXTAUTH_SECRET", "API_KEY", "AUTH", "DSN", "PASSPHRASE",
             "GPG_PASSPHRASE", "MASTER_KEY", "DB_PWD", "ADMIN_PASS", "SMTP_PASSWORD"):
    value = fake(32)
    add(f"env-{name.lower()}", f"export {name}={value}", value)
v1, v2, v3 = password(), fake(50), fake(32, HEX)
add("env-output", "USER=dev\nPWD=/home/dev/project\nDB_PASS=" + v1 + "\nSECRET_KEY=" + v2
    + "\nLANG=C.UTF-8\nSTRIPE_WEBHOOK_SECRET=" + v3 + "\nPATH=/usr/bin:/bin\n", v1, v2, v3)
v1, v2, v3, v4 = password(), fake(50), "sk_live_" + fake(24), fake(64, HEX)
add("dotenv-file",
    "# local settings, never commit\nDEBUG=false\nDATABASE_URL=postgres://app:" + v1
    + "@localhost:5432/app\nSECRET_KEY='" + v2 + "'\nSTRIPE_SECRET_KEY=\"" + v3
    + "\"\nENCRYPTION_KEY = " + v4 + "\nALLOWED_HOSTS=localhost\n", v1, v2, v3, v4)
v1 = password()
add("docker-run-env", f"docker run -e POSTGRES_PASSWORD={v1} -p 5432:5432 postgres:16", v1)
v1 = password()
add("compose-env-list", f"services:\n  db:\n    image: mysql:8\n    environment:\n"
    f"      - MYSQL_ROOT_PASSWORD={v1}\n      - MYSQL_DATABASE=app\n", v1)

# --- config files: JSON, YAML, TOML, INI, XML, properties ------------------------------------
v1, v2 = password(), fake(40)
add("json-nested-config", json.dumps({"db": {"host": "db", "user": "app", "password": v1},
                                      "api": {"apiKey": v2, "timeout": 30}}, indent=2), v1, v2)
v1 = fake(24)
add("json-docker-config", json.dumps({"auths": {"registry.acme.io": {
    "auth": base64.b64encode(f"ci:{v1}".encode()).decode()}}}),
    base64.b64encode(f"ci:{v1}".encode()).decode())
v1, v2, v3 = password(), fake(40), fake(32)
add("json-keys-of-issue", json.dumps({"pass": v1, "pwd": v1, "passphrase": v1, "auth": v2,
                                      "dsn": f"https://{v3}@sentry.io/1", "database_url": v2,
                                      "ssh_key": v2, "signing_key": v2, "encryption_key": v2}),
    v1, v2, v3)
v1 = password()
add("yaml-spring", f"spring:\n  datasource:\n    url: jdbc:postgresql://db/app\n"
    f"    username: app\n    password: {v1}\n", v1)
v1, v2 = fake(24), fake(40)
add("yaml-k8s-secret", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app\nstringData:\n"
    f"  DB_PASSWORD: \"{v1}\"\n  api-token: {v2}\n", v1, v2)
v1 = base64.b64encode(password().encode()).decode()
add("yaml-k8s-secret-data", f"data:\n  password: {v1}\n", v1)
v1 = "my long " + fake(10) + " phrase"
add("yaml-multi-word-value", f"auth:\n  passphrase: {v1}\n", v1.split()[2])
v1 = password()
add("toml-poetry", f'[http-basic.acme]\nusername = "ci"\npassword = "{v1}"\n', v1)
v1 = password()
add("ini-mycnf", f"[client]\nuser=root\npassword={v1}\nhost=db\n", v1)
v1 = password()
add("properties-file", f"spring.datasource.password={v1}\nspring.datasource.username=app\n", v1)
v1 = password()
add("xml-maven-settings", f"<server>\n  <id>nexus</id>\n  <username>ci</username>\n"
    f"  <password>{v1}</password>\n</server>", v1)
v1 = password()
add("php-array", f"return ['db' => ['user' => 'app', 'password' => '{v1}']];", v1)
v1 = password()
add("python-settings", f'DATABASES = {{"default": {{"NAME": "app", "PASSWORD": "{v1}"}}}}', v1)
v1 = password()
add("python-annotated", f'class Settings:\n    db_password: str = "{v1}"\n', v1)
v1 = fake(40)
add("go-assignment", f'token := "{v1}"\nclient := api.New(token)', v1)
v1 = password()
add("json-escaped-in-command", f'echo "{{\\"password\\": \\"{v1}\\"}}" > creds.json', v1)
v1 = password()
add("netrc-one-line", f"machine api.acme.io login bob password {v1}\n", v1)
v1 = password()
add("netrc-multi-line", f"machine ftp.acme.io\n  login deploy\n  password {v1}\n", v1)
v1 = password()
add("sql-identified-by", f"CREATE USER 'app'@'%' IDENTIFIED BY '{v1}';", v1)
v1 = password()
add("sql-with-password", f"ALTER ROLE app WITH LOGIN PASSWORD '{v1}';", v1)

# --- HTTP headers -----------------------------------------------------------------------------
basic = base64.b64encode(f"admin:{password()}".encode()).decode()
add("header-basic", f"curl -H 'Authorization: Basic {basic}' http://localhost:9090/", basic)
v1 = fake(40)
add("header-bearer-opaque", f"Authorization: Bearer {v1}\nAccept: application/json\n", v1)
v1, v2 = fake(32), fake(40)
add("header-cookie-later-pairs", f"curl -H 'Cookie: theme=dark; sessionid={v1}; csrftoken={v2}'"
    " https://app.acme.io/", v1, v2)
v1 = fake(32)
add("header-set-cookie", f"< Set-Cookie: sid={v1}; Path=/; HttpOnly; Secure\n", v1)
v1 = fake(32)
add("header-curl-b", f"curl -b 'session={v1}; lang=en' https://app.acme.io/", v1)
v1 = fake(32)
add("header-x-api-key", f'curl -H "X-Api-Key: {v1}" https://api.acme.io/v1/items', v1)
v1 = fake(32)
add("header-x-auth-token", f"X-Auth-Token: {v1}", v1)
v1 = base64.b64encode(f"proxy:{password()}".encode()).decode()
add("header-proxy-authorization", f"Proxy-Authorization: Basic {v1}", v1)
v1 = fake(32, HEX)
add("header-azure-api-key", f"curl https://acme.openai.azure.com/ -H \"api-key: {v1}\"", v1)
v1 = fake(39, URLSAFE)
add("header-python-dict", f"headers = {{'Authorization': 'Token {v1}', 'Accept': 'json'}}", v1)
v1 = fake(40)
add("header-http-log", f"> GET /v1/me HTTP/1.1\n> Host: api.acme.io\n> Authorization: Bearer {v1}"
    "\n> User-Agent: curl/8.5.0\n", v1)

# --- passwords as plain arguments, piped to a reader of secrets, tokens as a URL's user -------
for case_id, template in (
    ("htpasswd-b", "htpasswd -b /etc/nginx/.htpasswd admin {}"),
    ("htpasswd-bc-bcrypt", "sudo htpasswd -bcB -C 12 /etc/nginx/htpasswd prometheus '{}'"),
    ("htpasswd-nb-stdout", "htpasswd -nbB admin {} > files/htpasswd"),
    ("htpasswd-path", "/usr/bin/htpasswd -Bb ./auth/users deploy \"{}\" && echo ok"),
    ("mosquitto-passwd-b", "mosquitto_passwd -b /etc/mosquitto/passwd sensor {}"),
    ("openssl-passwd", "openssl passwd -6 -salt Xy12 {}"),
    ("mkpasswd", "mkpasswd -m sha-512 {}"),
    ("rabbitmqctl-add-user", "rabbitmqctl add_user app {} && rabbitmqctl set_user_tags app x"),
    ("rabbitmqctl-change", "rabbitmqctl change_password guest '{}'"),
    ("ldapsearch-w", "ldapsearch -x -D cn=admin,dc=acme -w {} -b dc=acme '(uid=x)'"),
    ("ldappasswd-s", "ldappasswd -x -D cn=admin,dc=acme -W -s {} uid=dev,dc=acme"),
    ("sudo-S-echo", "echo {} | sudo -S apt-get install -y nginx"),
    ("sudo-S-echo-quoted", "echo '{}' | sudo -S systemctl restart nginx"),
    ("sudo-S-echo-n", "echo -n \"{}\" | sudo -kS -u root whoami"),
    ("sudo-stdin-printf", "printf '%s\\n' '{}' | sudo --stdin -v"),
    ("sudo-S-herestring", "sudo -S ls /root <<< '{}'"),
    ("sudo-S-in-chain", "cd /srv && echo {} | sudo -S -p '' make install; ls"),
    ("docker-password-stdin", "echo '{}' | docker login -u ci --password-stdin ghcr.io"),
    ("podman-password-stdin", "echo {} | podman login --username ci --password-stdin quay.io"),
    ("chpasswd", "echo 'deploy:{}' | sudo chpasswd"),
    ("passwd-stdin", "echo {} | passwd --stdin deploy"),
):
    pw = password()
    add(case_id, template.format(pw), pw)
for case_id, template in (
    ("github-hex-token-url", "git clone https://{}@github.com/acme/api.git"),
    ("github-hex-token-remote", "git remote add origin https://{}@github.com/acme/web"),
    ("github-hex-token-oauth-basic", "git push https://{}:x-oauth-basic@github.com/acme/api"),
    ("github-hex-token-api", "curl https://{}@api.github.com/user"),
    ("gitlab-hex-token-url", "git clone https://{}@gitlab.acme.io/group/api.git"),
):
    tok = fake(40, HEX)
    add(case_id, template.format(tok), tok)
tok = fake(32)
add("generic-token-url", f"pip install git+https://{tok}@git.acme.io/acme/lib.git", tok)

HARMLESS: list[tuple[str, str]] = [
    ("usage-json", json.dumps({"usage": {"input_tokens": 1234, "output_tokens": 567,
                                         "cache_read_input_tokens": 89012,
                                         "cache_creation_input_tokens": 0}})),
    ("usage-text", "totalTokens: 9000, max_tokens=4096, input_tokens: 12, tokens: 7"),
    ("max-tokens-code", "response = client.messages.create(model=m, max_tokens=1024, messages=x)"),
    ("prose-reset", "Reset your password from the account settings page, then sign in again."),
    ("prose-api-key", "The API key is read from the environment at startup; never hard-code it."),
    ("prose-auth-failed", "FATAL: password authentication failed for user \"app\""),
    ("prose-token-expired", "The token expired, so run gh auth login again and retry the push."),
    ("prose-secrets", "Never commit secrets to the repository; use a passphrase manager."),
    ("prose-cookie", "The cookie banner asks for consent before any tracking happens."),
    ("git-log", "a3f5c9e1b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2 Fix login redirect\n"
                "commit 9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b\nAuthor: Dev <dev@acme.io>"),
    ("sha256sum", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  dist/a.tgz"),
    ("docker-digest", "ghcr.io/acme/api@sha256:4c2e8f1a9b7d6c5e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c"
                      "7d6e5f4a3b2c1d0e"),
    ("npm-integrity", json.dumps({"resolved": "https://registry.npmjs.org/x/-/x-1.0.0.tgz",
                                  "integrity": "sha512-Qw3k8vJ2pL9xR4tY6uI1oP0aS5dF7gH8jK2lZ3x"
                                               "C4vB5nM6qW7eR8tY9uI0oP1aS2dF3gH4jK5lZ6xC7v=="})),
    ("pip-hash", "pip install --require-hashes --hash=sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f0"
                 "0f1e2d3c4b5a69788796a5b4c3d2e1f0 acme"),
    ("uuids", "request_id=550e8400-e29b-41d4-a716-446655440000 "
              "session 3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
    ("python-code", "def check_password(password: str) -> bool:\n"
                    "    if not password:\n        return False\n"
                    "    return bcrypt.checkpw(password.encode(), stored_hash)\n"),
    ("tokenizer-code", "tokens = tokenizer.encode(text)\nfor key, value in sorted(d.items()):\n"
                       "    print(key, value)\njson.dumps(d, sort_keys=True)\n"),
    ("orm-code", "id = Column(Integer, primary_key=True)\nauthor = relationship('User')\n"
                 "keyboard_layout = 'us'\nbypass_cache = False\n"),
    ("pytest-output", "============ 12 passed, 1 skipped, 2 warnings in 3.21s ============"),
    ("paths", "/home/dev/project/src/auth/tokens.py\n/home/dev/project/src/keys/__init__.py\n"
              "~/.ssh/known_hosts\n"),
    ("pwd-in-env", "PWD=/home/dev/project\nOLDPWD=/home/dev\nHOME=/home/dev"),
    ("short-flags", "mkdir -p /tmp/build && ssh -p 2222 deploy@web1 && "
                    "docker run -p 8080:80 -u 1000:1000 nginx && psql -h db -p 5432 -U app"),
    ("git-commands", "git log -p --stat && pip install -U acme && tar -xzf a.tgz"),
    ("urls-without-credentials", "git clone https://github.com/acme/api.git && "
                                 "git clone git@github.com:acme/web.git && "
                                 "curl http://localhost:8080/metrics && psql postgres://db:5432/app"),
    ("json-ordinary-keys", json.dumps({"key": "color", "keys": ["a", "b"], "cache_key": "v1",
                                       "primary_key": "id", "public_key": "ssh-ed25519 AAAAC3N"
                                       "zaC1lZDI1NTE5AAAAIOk4 dev@laptop", "tokenizer": "cl100k",
                                       "auth_type": "oauth", "author": "dev"})),
    ("public-blocks", "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n"
                      "-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0C\n"
                      "-----END PUBLIC KEY-----\n"),
    ("hyphenated-words", "task-runner desk-lamp risk-assessment for sk-learn users"),
    ("markdown-auth", "## Authentication\n\nRun `gh auth login` and follow the prompts; the "
                      "credential helper stores the result."),
    ("mysql-without-password", "mysql -h db -P 3306 -u app -p\nmysql -u root -e 'show tables'"),
    ("comparison-code", "if count == 0:\n    return None\nresult = a if b else c\n"),
    ("url-login-user", "git clone https://git@github.com/acme/api.git && "
                       "git clone https://dev-team@bitbucket.org/acme/web.git"),
    ("sudo-without-stdin", "echo hello | sudo tee /etc/motd && echo x | sudo -u app cat"),
    ("htpasswd-interactive", "htpasswd -c /etc/nginx/.htpasswd admin && htpasswd -D f bob"),
    ("echo-pipe", "echo done | tee build.log && printf '%s\\n' a b | sort"),
]


# Pathological inputs for the redaction patterns (test_hook_secret_corpus, bench_redact).
ADVERSARIAL = [
    "a_" * 200_000 + "token",
    "password=" * 100_000,
    "key: " * 100_000,
    "token " * 100_000,
    "--password " * 100_000,
    "mysql -p" * 100_000,
    "mysql " + "x" * 200_000 + " -p",
    "curl -u " + "a" * 200_000 + ":",
    "://" + "a" * 200_000 + ":" + "b" * 200_000,
    "://a:" * 100_000,
    "-----BEGIN RSA PRIVATE KEY-----" * 20_000,
    "-----BEGIN PRIVATE KEY-----" + "-" * 200_000,
    "eyJ" + "a" * 200_000 + ".eyJ" + "b" * 200_000,
    'password="' + "\\\\" * 100_000,
    '\\"' * 200_000,
    "sk-" * 100_000,
    "x" * 13 + ".atlasv1." * 50_000,
    "1234567890:AA" * 50_000,
    "aaa1Q~" * 50_000,
    "password: " + "a " * 200_000,
    "identified by " * 50_000,
    "<password>" * 100_000,
    "password: str = " * 50_000,
]
