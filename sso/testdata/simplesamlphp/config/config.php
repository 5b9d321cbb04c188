<?php
/*
 * SimpleSAMLphp (Debian's 1.19) as the identity provider of Vigil's SSO
 * tests (sso/simplesamlphp_test.go). The test starts PHP's built-in server
 * with SIMPLESAMLPHP_CONFIG_DIR pointing here and passes what changes from
 * run to run in the environment: VIGIL_SSP_DIR (a temporary directory with
 * the IdP's key and certificate, sessions, logs), VIGIL_SSP_BASEURL (the
 * server's URL), VIGIL_SP_ENTITY and VIGIL_SP_ACS (Vigil's tenant SP).
 */
$dir = getenv('VIGIL_SSP_DIR');
$config = [
    'baseurlpath' => getenv('VIGIL_SSP_BASEURL'),
    'certdir' => $dir . '/cert/',
    'loggingdir' => $dir . '/log/',
    'datadir' => $dir . '/data/',
    'tempdir' => $dir . '/tmp',
    'metadatadir' => __DIR__ . '/../metadata/',
    'technicalcontact_name' => 'Vigil tests',
    'technicalcontact_email' => 'na@example.test',
    'timezone' => 'UTC',
    'secretsalt' => 'vigil-sso-test-salt-not-a-secret',
    'auth.adminpassword' => 'unused-admin-password',
    'admin.protectindexpage' => true,
    'admin.protectmetadata' => false,
    'debug' => ['saml' => false, 'backtraces' => true, 'validatexml' => false],
    'showerrors' => true,
    'errorreporting' => false,
    'logging.level' => SimpleSAML\Logger::WARNING,
    'logging.handler' => 'file',
    'logging.logfile' => 'simplesamlphp.log',
    'enable.saml20-idp' => true,
    'enable.shib13-idp' => false,
    'module.enable' => [
        'exampleauth' => true,
        'core' => true,
        'saml' => true,
        'admin' => true,
    ],
    'session.cookie.secure' => false,
    'session.cookie.samesite' => null,
    'session.phpsession.savepath' => $dir . '/sessions',
    'session.phpsession.cookiename' => 'SimpleSAMLTestIdP',
    'store.type' => 'phpsession',
    'language.available' => ['en'],
    'language.default' => 'en',
    'theme.use' => 'default',
    'usenewui' => false,
];
