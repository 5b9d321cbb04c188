<?php
// The test users. alice and bob are technicians of the tenant; carol is
// not (unknown user, or provisioned just in time when the test turns it on).
$config = [
    'admin' => ['core:AdminPassword'],
    'example-userpass' => [
        'exampleauth:UserPass',
        'alice:alice-pass' => ['uid' => ['alice'], 'email' => ['alice@example.test'], 'displayName' => ['Alice Example']],
        'bob:bob-pass' => ['uid' => ['bob'], 'email' => ['bob@example.test'], 'displayName' => ['Bob Example']],
        'carol:carol-pass' => ['uid' => ['carol'], 'email' => ['carol@example.test'], 'displayName' => ['Carol Example']],
    ],
];
